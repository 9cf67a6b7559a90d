//! Async ends: parking a task on the ring's waiter words (placeholder, filled below).
