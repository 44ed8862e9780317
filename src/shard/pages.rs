//! Serving the hub's own pages (see [`crate::web`]): the dashboard, guarded like the API,
//! and the demo chat, each only where its setting turns it on.

use super::context::Ctx;
use super::respond::{refuse, send_response};
use crate::api::ApiError;
use crate::forwarded::ClientAddress;
use crate::http;
use crate::web::{self, Site};

pub(super) fn on_page(cx: &mut Ctx, key: usize, site: Site, name: &str, client: &ClientAddress) {
    let admin = &cx.config().admin;
    let served = match site {
        Site::Dashboard => admin.enabled,
        Site::Demo => admin.demo,
    };
    if !served {
        return refuse(cx, key, &ApiError::new(404, "not_found", "not found"));
    }
    // With a key the pages are public, for they hold no data: the dashboard asks for
    // the key and gets every figure through the API with it. Without one, the API
    // answers loopback clients only, and so does its dashboard.
    if site == Site::Dashboard && cx.config().api.key.is_none() && !client.local {
        let why = "no api.key is configured, so the dashboard answers loopback clients only";
        return refuse(cx, key, &ApiError::new(403, "forbidden", why));
    }
    match web::page(site, name) {
        Some(page) => {
            let response = http::page_response(&page.content_type, &page.body);
            send_response(cx, key, 200, response);
        }
        None => refuse(cx, key, &ApiError::new(404, "not_found", "not found")),
    }
}
