//! The HTTP face of the plugin: the request/response types, the router that turns every flow's
//! result into a response (and a typed outcome), the pages, and the platform API.

pub mod csp;
pub mod http;
pub mod pages;
pub mod platform_api;
pub mod router;
pub mod setup_page;
