//! Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): a passage's fused score is
//! the sum, over the rankings it appears in, of `1 / (K + rank)` (rank from 1). It needs no
//! calibration between the full-text score (BM25 / `ts_rank`) and cosine similarity, which are
//! on unrelated scales, and a passage found by both rankings rises above one found by either.

use std::collections::HashMap;

/// The usual constant: it damps the weight of the very first ranks.
pub const K: f64 = 60.0;

/// The ids of the rankings (each best first) fused, best first, with their fused score. Ties
/// keep the order of first appearance (the full-text ranking is given first).
pub fn fuse(rankings: &[&[i64]]) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, (f64, usize)> = HashMap::new();
    let mut seen = 0;
    for ranking in rankings {
        for (i, id) in ranking.iter().enumerate() {
            let entry = scores.entry(*id).or_insert_with(|| {
                seen += 1;
                (0.0, seen)
            });
            entry.0 += 1.0 / (K + (i + 1) as f64);
        }
    }
    let mut out: Vec<(i64, f64, usize)> =
        scores.into_iter().map(|(id, (s, o))| (id, s, o)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    out.into_iter().map(|(id, s, _)| (id, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passage_both_rankings_found_beats_one_that_tops_a_single_ranking() {
        let fused = fuse(&[&[1, 2, 3], &[4, 2, 5]]);
        let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
        assert_eq!(ids, vec![2, 1, 4, 3, 5]);
        assert!((fused[0].1 - 2.0 / 62.0).abs() < 1e-12);
        assert!((fused[1].1 - 1.0 / 61.0).abs() < 1e-12);
    }

    #[test]
    fn one_ranking_alone_keeps_its_order() {
        let ids: Vec<i64> = fuse(&[&[9, 3, 7], &[]]).iter().map(|f| f.0).collect();
        assert_eq!(ids, vec![9, 3, 7]);
    }
}
