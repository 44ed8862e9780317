//! The pages the hub serves itself: the admin dashboard under `/admin` (`admin.enabled`),
//! the demo chat under `/demo` (`admin.demo`), and the JavaScript client the demo loads
//! from `/demo/neonex-client.js`.
//!
//! Release builds carry the files of `web/` and the client inside the binary, so there is
//! nothing to install beside it; debug builds read them from the source tree when asked,
//! so a page can be edited without a rebuild.

use std::borrow::Cow;

use rust_embed::Embed;

#[derive(Embed)]
#[folder = "web/admin/"]
#[exclude = "*.md"]
struct DashboardFiles;

#[derive(Embed)]
#[folder = "web/demo/"]
#[exclude = "*.md"]
struct DemoFiles;

#[derive(Embed)]
#[folder = "clients/js/"]
#[include = "src/neonex-client.js"]
struct ClientFiles;

/// The client's module, as the demo asks for it.
const CLIENT_MODULE: &str = "neonex-client.js";

/// One of the hub's own sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// `/admin`.
    Dashboard,
    /// `/demo`.
    Demo,
}

/// A file of a site.
pub(crate) struct Page {
    pub content_type: String,
    pub body: Cow<'static, [u8]>,
}

/// The site `path` belongs to, and the file it names there (`/admin` and `/admin/` name
/// the site's `index.html`).
pub(crate) fn site_of(path: &str) -> Option<(Site, &str)> {
    let (site, rest) = if let Some(rest) = path.strip_prefix("/admin") {
        (Site::Dashboard, rest)
    } else if let Some(rest) = path.strip_prefix("/demo") {
        (Site::Demo, rest)
    } else {
        return None;
    };
    match rest {
        "" | "/" => Some((site, "index.html")),
        _ => rest.strip_prefix('/').map(|file| (site, file)),
    }
}

/// The file `name` of `site`, if it has one. Names that climb out of the site or name a
/// hidden file have none.
pub(crate) fn page(site: Site, name: &str) -> Option<Page> {
    let unsafe_name = name
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
        || name.contains('\\');
    if unsafe_name {
        return None;
    }
    let file = match site {
        Site::Dashboard => DashboardFiles::get(name),
        Site::Demo if name == CLIENT_MODULE => ClientFiles::get(&format!("src/{CLIENT_MODULE}")),
        Site::Demo => DemoFiles::get(name),
    }?;
    let mimetype = file.metadata.mimetype();
    let textual = mimetype.starts_with("text/") || mimetype.ends_with("javascript");
    let content_type = match textual {
        true => format!("{mimetype}; charset=utf-8"),
        false => mimetype.to_owned(),
    };
    Some(Page {
        content_type,
        body: file.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_site_and_a_file() {
        assert_eq!(site_of("/admin"), Some((Site::Dashboard, "index.html")));
        assert_eq!(site_of("/admin/"), Some((Site::Dashboard, "index.html")));
        assert_eq!(
            site_of("/admin/vendor/a.js"),
            Some((Site::Dashboard, "vendor/a.js"))
        );
        assert_eq!(site_of("/demo"), Some((Site::Demo, "index.html")));
        assert_eq!(site_of("/administrator"), None);
        assert_eq!(site_of("/api/rooms"), None);
    }

    #[test]
    fn names_never_leave_the_site() {
        for name in [
            "../Cargo.toml",
            "a/../../x",
            ".git/config",
            "a//b",
            "a\\b",
            "",
        ] {
            assert!(page(Site::Dashboard, name).is_none(), "{name}");
            assert!(page(Site::Demo, name).is_none(), "{name}");
        }
        assert!(page(Site::Dashboard, "README.md").is_none());
    }
}
