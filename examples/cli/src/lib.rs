//! Example binaries live beside this crate as `[[example]]` targets.
