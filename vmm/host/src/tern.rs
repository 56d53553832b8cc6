//! Placeholder: the Tern host (issue 6).
