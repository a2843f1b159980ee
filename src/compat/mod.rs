//! Migration verdicts, pure: the destination kernel's checks (kernel-ap.md §6) for the seed (v1)
//! and latest rules, as structured reasons with stable codes and the kernel's own messages.
