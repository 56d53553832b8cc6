//! Placeholder: the Linux KVM host (issue 6).
