pub mod smtp_peer;
