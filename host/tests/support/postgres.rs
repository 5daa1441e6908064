//! The throwaway PostgreSQL the cluster tests run against (its own crate,
//! shared with the cluster benchmarks).

pub use throwaway_postgres::Postgres;
