//! Skeleton; being written.
