//! Splitting requests into jobs within a service's limits. Pure.

use std::ops::Range;

use crate::llm::batch::Limits;

/// Consecutive ranges of the requests, one per job: each holds at most
/// `limits.max_requests` requests and at most `limits.max_bytes` bytes of encoded lines
/// (`sizes[i]` is line `i`'s size, newline included). A single line larger than the byte
/// limit travels alone (the service will refuse it, which is reported for its pages only).
pub fn plan(sizes: &[usize], limits: Limits) -> Vec<Range<usize>> {
    let max_requests = limits.max_requests.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start >= max_requests || (i > start && bytes + size > limits.max_bytes);
        if full {
            chunks.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_requests: usize, max_bytes: usize) -> Limits {
        Limits {
            max_requests,
            max_bytes,
        }
    }

    #[test]
    fn openai_limits_split_at_50000_requests() {
        let sizes = vec![1000; 120_000];
        let chunks = plan(&sizes, limits(50_000, 200 * 1024 * 1024));
        assert_eq!(chunks, [0..50_000, 50_000..100_000, 100_000..120_000]);
        // Exactly at the limit: one job.
        assert_eq!(plan(&sizes[..50_000], limits(50_000, usize::MAX)).len(), 1);
    }

    #[test]
    fn bytes_split_before_the_line_that_would_overflow() {
        assert_eq!(plan(&[40, 40, 40, 10], limits(100, 100)), [0..2, 2..4]);
        // An oversized line travels alone.
        assert_eq!(plan(&[10, 500, 10], limits(100, 100)), [0..1, 1..2, 2..3]);
        assert!(plan(&[], limits(1, 1)).is_empty());
    }
}
