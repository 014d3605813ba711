//! The service model, shared by both processes: static services, the route
//! table built from them and from traced programs, the choice among a
//! route's backends, and the DNS responder that answers service names.

pub mod balancer;
pub mod dns;
pub mod routes;
pub mod shared;
pub mod static_table;
