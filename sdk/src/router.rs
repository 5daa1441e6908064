use std::collections::HashMap;

use crate::{Env, Method, Request, Response, Result};

/// The handler of one route.
type Handler<'a, D> = Box<dyn Fn(Request, RouteContext<D>) -> Result<Response> + 'a>;

/// Routes requests to handlers by method and path, the way workers-rs's
/// `Router` does.
///
/// Patterns are `/`-separated segments: literal text, `:name` for one
/// segment, or a final `*name` for the rest of the path. When several
/// patterns match, the most specific wins (literal beats `:name` beats
/// `*name`, segment by segment). A path that matches no pattern is a 404; a
/// path that matches only under other methods is a 405 with an `allow`
/// header. `HEAD` falls back to the `GET` handler.
///
/// ```no_run
/// use verge::{Env, Request, Response, Result, Router};
///
/// #[verge::worker]
/// fn fetch(req: Request, env: Env) -> Result<Response> {
///     Router::new()
///         .get("/", |_, _| Ok(Response::text("home")))
///         .get("/users/:id", |_, ctx| {
///             let id = ctx.param("id").unwrap_or_default();
///             Response::json(&serde_json::json!({ "id": id }))
///         })
///         .get("/files/*path", |_, ctx| Ok(Response::text(ctx.param("path").unwrap_or_default())))
///         .run(req, env)
/// }
/// ```
pub struct Router<'a, D = ()> {
    routes: Vec<Route<'a, D>>,
    data: D,
}

struct Route<'a, D> {
    /// `None` matches any method.
    method: Option<Method>,
    pattern: Pattern,
    handler: Handler<'a, D>,
}

/// What a route handler gets besides the request.
pub struct RouteContext<D = ()> {
    /// The data given to [`Router::with_data`].
    pub data: D,
    /// The worker's environment.
    pub env: Env,
    params: HashMap<String, String>,
}

impl<D> RouteContext<D> {
    /// The value captured by `:name` or `*name` in the matched pattern,
    /// percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Shorthand for `ctx.env.var(name)`.
    pub fn var(&self, name: &str) -> Result<String> {
        self.env.var(name)
    }

    /// Shorthand for `ctx.env.secret(name)`.
    pub fn secret(&self, name: &str) -> Result<String> {
        self.env.secret(name)
    }
}

impl<'a> Router<'a, ()> {
    /// A router with no routes and no shared data.
    pub fn new() -> Self {
        Self::with_data(())
    }
}

impl Default for Router<'_, ()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, D> Router<'a, D> {
    /// A router whose handlers get `data` in [`RouteContext::data`].
    pub fn with_data(data: D) -> Self {
        Self {
            routes: Vec::new(),
            data,
        }
    }

    /// Adds a route for `method` (or every method, for `None`).
    fn route(
        mut self,
        method: Option<Method>,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.routes.push(Route {
            method,
            pattern: Pattern::parse(pattern),
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a `GET` route.
    pub fn get(
        self,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(Some(Method::Get), pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post(
        self,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(Some(Method::Post), pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put(
        self,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(Some(Method::Put), pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch(
        self,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(Some(Method::Patch), pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(Some(Method::Delete), pattern, handler)
    }

    /// Adds a route for any other `method`.
    pub fn on(
        self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(Some(method), pattern, handler)
    }

    /// Adds a route that matches every method.
    pub fn any(
        self,
        pattern: &str,
        handler: impl Fn(Request, RouteContext<D>) -> Result<Response> + 'a,
    ) -> Self {
        self.route(None, pattern, handler)
    }

    /// Dispatches `req` to the most specific matching route.
    pub fn run(self, req: Request, env: Env) -> Result<Response> {
        let segments: Vec<&str> = split_path(req.path()).collect();
        let mut best: Option<(&Route<'a, D>, Match)> = None;
        let mut allowed: Vec<String> = Vec::new();

        for route in &self.routes {
            let Some(found) = route.pattern.matches(&segments) else {
                continue;
            };
            let method_ok = match &route.method {
                None => true,
                Some(m) => {
                    m == req.method() || (*req.method() == Method::Head && *m == Method::Get)
                }
            };
            if !method_ok {
                allowed.extend(route.method.as_ref().map(|m| m.to_string()));
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(_, (best_rank, _))| found.0 > *best_rank)
            {
                best = Some((route, found));
            }
        }

        match best {
            Some((route, (_, params))) => (route.handler)(
                req,
                RouteContext {
                    data: self.data,
                    env,
                    params,
                },
            ),
            None if allowed.is_empty() => Ok(Response::not_found()),
            None => {
                allowed.sort();
                allowed.dedup();
                Response::error("Method Not Allowed", 405).with_header("allow", &allowed.join(", "))
            }
        }
    }
}

/// A pattern's match: how specific, segment by segment, and the captures.
type Match = (Vec<Rank>, HashMap<String, String>);

/// How specifically one segment matched; higher is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Rest,
    Param,
    Literal,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

#[derive(Debug)]
struct Pattern {
    segments: Vec<Segment>,
}

impl Pattern {
    fn parse(pattern: &str) -> Self {
        let segments = split_path(pattern)
            .map(|s| {
                if let Some(name) = s.strip_prefix(':') {
                    Segment::Param(name.to_owned())
                } else if let Some(name) = s.strip_prefix('*') {
                    Segment::Rest(name.to_owned())
                } else {
                    Segment::Literal(s.to_owned())
                }
            })
            .collect();
        Self { segments }
    }

    /// The per-segment ranks and the captured params, if `path` matches.
    fn matches(&self, path: &[&str]) -> Option<Match> {
        let mut ranks = Vec::with_capacity(self.segments.len());
        let mut params = HashMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest(name) => {
                    let rest: Vec<String> = path[i.min(path.len())..]
                        .iter()
                        .map(|s| decode(s))
                        .collect();
                    params.insert(name.clone(), rest.join("/"));
                    ranks.push(Rank::Rest);
                    return Some((ranks, params));
                }
                Segment::Literal(literal) => {
                    if path.get(i) != Some(&literal.as_str()) {
                        return None;
                    }
                    ranks.push(Rank::Literal);
                }
                Segment::Param(name) => {
                    params.insert(name.clone(), decode(path.get(i)?));
                    ranks.push(Rank::Param);
                }
            }
        }
        (path.len() == self.segments.len()).then_some((ranks, params))
    }
}

/// The non-empty segments of a path, so `/a/b/` and `/a/b` route alike.
fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(pattern: &str, path: &str) -> Option<Match> {
        let segments: Vec<&str> = split_path(path).collect();
        Pattern::parse(pattern).matches(&segments)
    }

    #[test]
    fn captures_params_and_rest() {
        let (_, params) = ranked("/users/:id", "/users/a%20b").unwrap();
        assert_eq!(params["id"], "a b");
        let (_, params) = ranked("/files/*path", "/files/a/b/c.txt").unwrap();
        assert_eq!(params["path"], "a/b/c.txt");
        let (_, params) = ranked("/files/*path", "/files").unwrap();
        assert_eq!(params["path"], "");
        assert!(ranked("/users/:id", "/users").is_none());
        assert!(ranked("/users/:id", "/users/1/extra").is_none());
    }

    #[test]
    fn literal_outranks_param_outranks_rest() {
        let literal = ranked("/users/me", "/users/me").unwrap().0;
        let param = ranked("/users/:id", "/users/me").unwrap().0;
        let rest = ranked("/users/*any", "/users/me").unwrap().0;
        assert!(literal > param && param > rest);
    }
}
