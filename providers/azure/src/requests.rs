//! Not written yet (next commit).
