//! Unix-domain socket calls (to be written).
