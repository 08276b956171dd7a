//! The contract's own checks: the generated TypeScript is current, and the wire shapes.
use ts_rs::{Config, TS};

use super::*;

/// `web/src/contract.ts`, found from this crate's folder upwards (the repository root).
fn ts_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("web/src/contract.ts"))
        .find(|file| file.exists())
        .expect("web/src/contract.ts above the crate's folder")
}

/// The TypeScript of every contract type, in one file.
fn typescript() -> String {
    let cfg = Config::new().with_large_int("number");
    let decls = [
        ErrorCode::decl(&cfg),
        ErrorBody::decl(&cfg),
        ErrorDetail::decl(&cfg),
        AuthorKind::decl(&cfg),
        AuthorView::decl(&cfg),
        MessageView::decl(&cfg),
        DebateMeta::decl(&cfg),
        DebateRole::decl(&cfg),
        UserView::decl(&cfg),
        MemberRole::decl(&cfg),
        MemberView::decl(&cfg),
        RemovedReason::decl(&cfg),
        AgentRef::decl(&cfg),
        AgentErrorClass::decl(&cfg),
        AckStatus::decl(&cfg),
        ServerFrame::decl(&cfg),
        ClientFrameShape::decl(&cfg),
    ];
    let http_decls = [
        http::Liveness::decl(&cfg),
        http::Alive::decl(&cfg),
        http::Readiness::decl(&cfg),
        http::ReadyStatus::decl(&cfg),
        http::DbStatus::decl(&cfg),
        http::BrokerStatus::decl(&cfg),
        http::NewAccount::decl(&cfg),
        http::Credentials::decl(&cfg),
        http::Session::decl(&cfg),
        http::AgentView::decl(&cfg),
        http::AgentList::decl(&cfg),
        http::NewThread::decl(&cfg),
        http::ThreadView::decl(&cfg),
        http::ThreadList::decl(&cfg),
        http::NewMember::decl(&cfg),
        http::MessageList::decl(&cfg),
        http::PostMessage::decl(&cfg),
        http::QueuedMessage::decl(&cfg),
        http::QueuedStatus::decl(&cfg),
        http::NewDebate::decl(&cfg),
        http::DebateAccepted::decl(&cfg),
        http::AcceptedStatus::decl(&cfg),
        threads::ThreadPatch::decl(&cfg),
        threads::MemberList::decl(&cfg),
        threads::SearchHitView::decl(&cfg),
        threads::SearchResults::decl(&cfg),
        threads::ExportedMessageView::decl(&cfg),
        threads::ThreadExport::decl(&cfg),
        threads::ExportArchive::decl(&cfg),
        threads::ImportedThreadView::decl(&cfg),
        threads::ImportResult::decl(&cfg),
        accounts::Role::decl(&cfg),
        accounts::Status::decl(&cfg),
        accounts::AccountView::decl(&cfg),
        accounts::AdminAccountView::decl(&cfg),
        accounts::AccountList::decl(&cfg),
        accounts::AccessPatch::decl(&cfg),
        accounts::SessionView::decl(&cfg),
        accounts::SessionList::decl(&cfg),
        accounts::PasswordChange::decl(&cfg),
        accounts::PasswordReset::decl(&cfg),
        accounts::TokenScope::decl(&cfg),
        accounts::NewApiToken::decl(&cfg),
        accounts::ApiTokenView::decl(&cfg),
        accounts::CreatedApiToken::decl(&cfg),
        accounts::ApiTokenList::decl(&cfg),
        accounts::InviteView::decl(&cfg),
        accounts::InviteList::decl(&cfg),
        accounts::CreatedLink::decl(&cfg),
        sso::SignInOptions::decl(&cfg),
        sso::SsoProviderView::decl(&cfg),
        sso::SsoExchange::decl(&cfg),
        usage::UsageRow::decl(&cfg),
        usage::UsageTotals::decl(&cfg),
        usage::UsageReport::decl(&cfg),
        usage::BudgetLimits::decl(&cfg),
        usage::BudgetPeriod::decl(&cfg),
        usage::MyBudget::decl(&cfg),
        usage::BudgetOverride::decl(&cfg),
        usage::BudgetSettingsView::decl(&cfg),
        documents::DocumentView::decl(&cfg),
        documents::DocumentList::decl(&cfg),
        documents::ChunkView::decl(&cfg),
        documents::ChunkList::decl(&cfg),
        documents::PassageView::decl(&cfg),
        documents::PassageList::decl(&cfg),
        documents::Citation::decl(&cfg),
        context::SummaryMethod::decl(&cfg),
        context::ContextSummaryView::decl(&cfg),
        personas::AgentSource::decl(&cfg),
        personas::KeyStatus::decl(&cfg),
        personas::ConnectionView::decl(&cfg),
        personas::ConnectionList::decl(&cfg),
        personas::ConnectionInput::decl(&cfg),
        personas::ModelList::decl(&cfg),
        personas::AdminAgentView::decl(&cfg),
        personas::AdminAgentList::decl(&cfg),
        personas::AgentInput::decl(&cfg),
        memories::MemoryView::decl(&cfg),
        memories::MemoryList::decl(&cfg),
        memories::MemorySettingsView::decl(&cfg),
        memories::MemoryInput::decl(&cfg),
        memories::MemoryOptIn::decl(&cfg),
        memories::MemoriesDeleted::decl(&cfg),
        memories::MemoryChange::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from src/contract.rs, src/contract/http.rs and src/contract/accounts.rs by\n\
         // `UPDATE_CONTRACT=1 cargo test --lib contract`.\n\
         // Do not edit: CI fails when this file differs from what the Rust types generate.\n\n",
    );
    for d in decls.into_iter().chain(http_decls) {
        out.push_str("export ");
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.trim_end().to_string() + "\n"
}

#[test]
fn contract_ts_is_current() {
    let generated = typescript();
    if std::env::var("UPDATE_CONTRACT").is_ok_and(|v| v == "1") {
        std::fs::write(ts_file(), &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(ts_file()).unwrap_or_default();
    assert!(
        checked_in == generated,
        "web/src/contract.ts differs from the Rust contract types: run \
         `UPDATE_CONTRACT=1 cargo test --lib contract` and commit the result"
    );
}

/// The history served during an outage reads messages back out of stored `message` frames.
#[test]
fn a_message_frame_reads_back_as_its_message() {
    let message = MessageView {
        id: "m".into(),
        thread_id: "t".into(),
        seq: 3,
        client_id: "c".into(),
        author: AuthorView {
            kind: AuthorKind::Agent,
            id: "a".into(),
            name: "A".into(),
        },
        body: "hi".into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        status: Some("incomplete".into()),
        debate: None,
        version_of: None,
        model: None,
        duration_ms: None,
        prompt_tokens: None,
        completion_tokens: None,
        error_class: Some(AgentErrorClass::Cancelled),
        citations: None,
        reasoning: None,
        reasoning_tokens: None,
        context_summary: None,
    };
    let frame = ServerFrame::Message {
        message: message.clone(),
        thread: "t".into(),
    };
    let back: ServerFrame = serde_json::from_str(&frame.to_json()).unwrap();
    assert_eq!(back, frame);
}

#[test]
fn frames_serialise_as_the_contract_writes_them() {
    let f = ServerFrame::Ack {
        client_id: "c".into(),
        status: AckStatus::Queued,
        seq: None,
        message_id: None,
        thread: "t".into(),
    };
    assert_eq!(
        f.to_json(),
        r#"{"type":"ack","client_id":"c","status":"queued","thread":"t"}"#
    );
    let e = ServerFrame::Error {
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
        client_id: None,
        retry_after_ms: Some(50),
        resets_at: None,
    };
    assert_eq!(
        e.to_json(),
        r#"{"type":"error","code":"rate_limited","message":"slow down","retry_after_ms":50}"#
    );
    for code in [ErrorCode::UnsupportedType, ErrorCode::ProviderError] {
        assert_eq!(
            serde_json::to_value(code).unwrap(),
            serde_json::Value::String(code.as_str().into())
        );
    }
}
