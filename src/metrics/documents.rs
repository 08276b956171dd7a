//! The metrics of documents (issue #19): indexing, extraction failures, retrieval latency, and
//! the embeddings of hybrid retrieval (docs/operations.md#metrics).

use super::{Metrics, Out};

impl Metrics {
    pub(super) fn render_documents(&self, o: &mut Out) {
        o.counter(
            "documents_indexed_total",
            "Documents whose text was extracted and indexed.",
            &self.documents_indexed,
        );
        o.counters(
            "document_extraction_failures_total",
            "Document extractions that failed, by reason.",
            &self.document_failures,
        );
        o.histogram(
            "document_retrieval_seconds",
            "Time to find the passages of a thread's documents for a question.",
            &self.document_retrieval,
        );
        o.counters(
            "embedding_requests_total",
            "Embeddings requests by purpose (index, query) and outcome (ok, error).",
            &self.embedding_requests,
        );
        o.histograms(
            "embedding_request_seconds",
            "Duration of embeddings requests by purpose.",
            &self.embedding_seconds,
        );
        o.counter(
            "document_embedding_failures_total",
            "Passages left without a vector after their retries (full-text only until the backfill).",
            &self.embedding_failures,
        );
        o.counter(
            "document_chunks_embedded_total",
            "Passages whose vector was stored (at indexing or by the backfill).",
            &self.embedded_chunks,
        );
    }
}
