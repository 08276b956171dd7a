//! Unit tests of the log guard on small hand-written logs.

use super::{input::url_path, *};

#[test]
fn unlogged_attempts_are_inferred_from_the_reconnection() {
    let log = r#"{"severity":"WARNING","time":"2024-05-01T10:00:00Z","message":"database connection lost","cause":"x"}
{"severity":"WARNING","time":"2024-05-01T10:00:01Z","message":"database connection attempt failed","attempt":1}
{"severity":"WARNING","time":"2024-05-01T10:00:02Z","message":"database connection attempt failed","attempt":2}
{"severity":"WARNING","time":"2024-05-01T10:00:05Z","message":"database connection attempt failed","attempt":4}
{"severity":"INFO","time":"2024-05-01T10:00:09Z","message":"database reconnected after 5 attempts in 9000 ms","attempts":5}"#;
    let a = analyse(log).unwrap();
    assert_eq!(a.db.losses.count, 1);
    assert_eq!(a.db.reconnects.count, 1);
    // The loss plus four failed attempts, one of which was not logged.
    assert_eq!(a.db.failures.count, 5);
    assert_eq!(a.status(), Status::Ok);
}

#[test]
fn newest_first_exports_are_replayed_in_time_order() {
    let log = r#"[
 {"severity":"INFO","timestamp":"2024-05-01T10:00:09Z","jsonPayload":{"message":"database reconnected after 2 attempts in 9000 ms","attempts":2}},
 {"severity":"WARNING","timestamp":"2024-05-01T10:00:00Z","jsonPayload":{"message":"database connection lost"}}
]"#;
    let a = analyse(log).unwrap();
    assert!(a.db.down_at_end.is_empty());
    assert_eq!(a.db.reconnect_success(), Some(1.0));
}

#[test]
fn failed_responses_logged_by_tower_http_count_as_5xx() {
    let log = r#"{"severity":"ERROR","time":"2024-05-01T10:00:00Z","message":"response failed","classification":"Status code: 503 Service Unavailable","path":"/api/auth/register"}"#;
    let a = analyse(log).unwrap();
    assert_eq!(a.http_5xx.count(), 1);
}

#[test]
fn paths_come_from_urls_and_paths() {
    assert_eq!(url_path("https://x.run.app/ws?token=a"), "/ws");
    assert_eq!(url_path("/ws?token=a"), "/ws");
    assert_eq!(url_path("https://x.run.app"), "/");
}

#[test]
fn text_without_entries_is_unreadable() {
    assert!(analyse("hello\nworld\n").is_err());
}

#[test]
fn websocket_outcome_events_are_the_source_of_the_websocket_sli() {
    // Outcome events, plus lines that older logic also took for WebSocket traffic: the request
    // span's /ws path and a "closing dead peer" message. Only the events count.
    let mut log = String::new();
    for i in 0..18 {
        log.push_str(&format!(
            "{{\"severity\":\"INFO\",\"time\":\"2024-05-01T10:00:{i:02}Z\",\"message\":\"websocket outcome\",\"outcome\":\"closed\",\"reason\":\"client closed\"}}\n"
        ));
    }
    log.push_str(r#"{"severity":"INFO","time":"2024-05-01T10:00:30Z","message":"websocket outcome","outcome":"rejected","reason":"unauthorized","close_code":4401}
{"severity":"WARNING","time":"2024-05-01T10:00:31Z","message":"websocket outcome","outcome":"error","reason":"invalid UTF-8","close_code":1007}
{"severity":"WARNING","time":"2024-05-01T10:00:32Z","message":"websocket outcome","outcome":"error","reason":"frame too large","close_code":1009}
{"severity":"INFO","time":"2024-05-01T10:00:33Z","message":"closing dead peer","connection_id":7}
{"severity":"INFO","time":"2024-05-01T10:00:34Z","message":"websocket outcome","outcome":"rejected","reason":"too many connection attempts","http_status":503,"path":"/ws"}
{"severity":"ERROR","time":"2024-05-01T10:00:34Z","message":"response failed","classification":"Status code: 503 Service Unavailable","path":"/ws"}
"#);
    let a = analyse(&log).unwrap();
    let ws = &a.websocket;
    assert_eq!(ws.source, Source::Events);
    assert_eq!(ws.connections.count, 22);
    assert_eq!(ws.errors.count, 4);
    assert_eq!(ws.outcomes["closed"], 18);
    assert_eq!(ws.outcomes["rejected"], 2);
    assert_eq!(ws.outcomes["error"], 2);
    assert_eq!(ws.reasons["error: invalid UTF-8"], 1);
    // The worst window with at least 20 connections starts at the third: 4 of 20 (20 %).
    let worst = ws.worst_window().unwrap();
    assert_eq!((worst.connections, worst.errors), (20, 4));
    assert_eq!(a.status(), Status::Critical);
    assert_eq!(a.http_5xx.count(), 1);
    assert_eq!(a.http_5xx.source, Source::Events);
}

#[test]
fn the_websocket_ratio_is_judged_per_five_minute_window() {
    // 40 good connections spread over an hour, then 3 errors among 20 connections in one minute.
    let mut log = String::new();
    for i in 0..40 {
        log.push_str(&format!(
            "{{\"time\":\"2024-05-01T10:{:02}:00Z\",\"message\":\"websocket outcome\",\"outcome\":\"closed\"}}\n",
            i + 10
        ));
    }
    for i in 0..20 {
        let outcome = if i < 3 { "error" } else { "closed" };
        log.push_str(&format!(
            "{{\"time\":\"2024-05-01T11:00:{i:02}Z\",\"message\":\"websocket outcome\",\"outcome\":\"{outcome}\"}}\n"
        ));
    }
    let a = analyse(&log).unwrap();
    // 3 of 60 overall (5 %, not over), but 3 of 20 in the worst window (15 %).
    assert_eq!(a.ws_error_rate(), Some(0.05));
    let worst = a.websocket.worst_window().unwrap();
    assert_eq!((worst.connections, worst.errors), (20, 3));
    assert_eq!(a.status(), Status::Critical);
}

#[test]
fn rate_limited_events_win_over_request_logs_for_the_same_answers() {
    let log = r#"[
 {"timestamp":"2024-05-01T10:00:00Z","httpRequest":{"requestUrl":"https://x/api/auth/login","status":429}},
 {"timestamp":"2024-05-01T10:00:00Z","jsonPayload":{"message":"rate limited","scope":"auth"}},
 {"timestamp":"2024-05-01T10:00:01Z","httpRequest":{"requestUrl":"https://x/api/auth/login","status":429}},
 {"timestamp":"2024-05-01T10:00:01Z","jsonPayload":{"message":"rate limited","scope":"auth"}},
 {"timestamp":"2024-05-01T10:00:02Z","jsonPayload":{"message":"rate limited","scope":"send"}}
]"#;
    let a = analyse(log).unwrap();
    assert_eq!(a.rate_limited.count(), 3);
    assert_eq!(a.rate_limited.source, Source::Events);
    assert_eq!(a.rate_limited.by["auth"], 2);
    assert_eq!(a.rate_limited.by["send"], 1);
}

#[test]
fn events_of_the_same_millisecond_share_their_window() {
    let mut log = String::new();
    for i in 0..25 {
        let outcome = if i % 5 == 0 { "error" } else { "closed" };
        log.push_str(&format!(
            "{{\"time\":\"2024-05-01T10:00:00.001Z\",\"message\":\"websocket outcome\",\"outcome\":\"{outcome}\"}}\n"
        ));
    }
    let worst = analyse(&log).unwrap().websocket.worst_window().unwrap();
    assert_eq!((worst.connections, worst.errors), (25, 5));
}
