//! The key of a labelled metric's children: owned label values in the map, found with the
//! caller's borrowed `&[&str]` (a `Borrow<dyn LabelValues>` so that `BTreeMap::get` needs no
//! allocation). Ordered as sequences of strings, which is also the order metrics render in.

/// A label set's values as a family stores them. The map is searched with the caller's
/// borrowed `&[&str]` (through [`LabelValues`]), in O(log n) string comparisons and without
/// allocating: `http_requests_total` holds every route x method x status from the start.
#[derive(Debug, Clone)]
pub(super) struct LabelKey(pub(super) Vec<String>);

/// Label values, owned or borrowed, ordered as sequences of strings.
pub(super) trait LabelValues {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> &str;
}

impl LabelValues for LabelKey {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, i: usize) -> &str {
        &self.0[i]
    }
}

/// A lookup's label values.
pub(super) struct Borrowed<'a>(pub(super) &'a [&'a str]);

impl LabelValues for Borrowed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, i: usize) -> &str {
        self.0[i]
    }
}

impl Ord for dyn LabelValues + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..self.len().min(other.len()))
            .map(|i| self.at(i).cmp(other.at(i)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.len().cmp(&other.len()))
    }
}

impl PartialOrd for dyn LabelValues + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelValues + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for dyn LabelValues + '_ {}

impl<'a> std::borrow::Borrow<dyn LabelValues + 'a> for LabelKey {
    fn borrow(&self) -> &(dyn LabelValues + 'a) {
        self
    }
}

impl Ord for LabelKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self as &dyn LabelValues).cmp(other as &dyn LabelValues)
    }
}

impl PartialOrd for LabelKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for LabelKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for LabelKey {}
