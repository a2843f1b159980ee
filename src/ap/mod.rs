//! The AP domain model: ids, masks and their sysfs text formats, facility bits, types and the
//! typed inventory of a host. Pure: no I/O, no Kubernetes.

pub mod cnum;
pub mod functions;
pub mod ids;
pub mod inventory;
pub mod kmsg;
pub mod mask;
pub mod matrix;
pub mod meta;
pub mod types;

pub use functions::ApFunctions;
pub use ids::{Apid, Apqi, Apqn};
pub use inventory::{Card, HostConfig, Inventory, KernelInfo, KernelProfile, Mdev, Queue, QueueStatus};
pub use mask::Mask;
pub use matrix::Matrix;
