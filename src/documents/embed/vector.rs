//! Vectors as Emergence keeps them: unit length (so cosine similarity is a dot product), stored
//! as little-endian f32 bytes, the same on SQLite and PostgreSQL.

/// Scale `v` to unit length; `None` for a vector that has no direction or is not finite.
pub fn normalised(mut v: Vec<f32>) -> Option<Vec<f32>> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    for x in &mut v {
        *x /= norm;
    }
    Some(v)
}

/// The stored form: each value as 4 little-endian bytes.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector of stored bytes; `None` when they are not a whole number of f32.
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// Cosine similarity of two unit vectors (their dot product); `None` when the sizes differ.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    (a.len() == b.len()).then(|| a.iter().zip(b).map(|(x, y)| x * y).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_bytes_at_unit_length() {
        let v = normalised(vec![3.0, 4.0]).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        let bytes = to_bytes(&v);
        assert_eq!(bytes.len(), 8);
        assert_eq!(from_bytes(&bytes).unwrap(), v);
        assert!(from_bytes(&bytes[..7]).is_none());
        assert!(normalised(vec![0.0, 0.0]).is_none());
        assert!(normalised(vec![f32::NAN]).is_none());
        let same = cosine(&v, &v).unwrap();
        assert!((same - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&v, &[1.0]), None);
    }
}
