//! A file service on an R2 bucket: `PUT`, `GET` (with `Range:` and
//! `If-None-Match`), `HEAD` and `DELETE` on `/files/<key>`, listings on
//! `/files?prefix=&delimiter=&cursor=&limit=`, and multipart uploads for
//! files larger than one request body:
//!
//! - `POST /uploads/<key>` starts one and answers its `upload_id`;
//! - `PUT /uploads/<key>?upload_id=..&part=N` stores part N (every part
//!   but the last at least 5 MiB) and answers its etag;
//! - `POST /uploads/<key>?upload_id=..` with `{"parts": [{"part_number":
//!   1, "etag": ".."}, ...]}` joins the parts into the file;
//! - `DELETE /uploads/<key>?upload_id=..` abandons it.
//!
//! Downloads are streamed by the host from storage to the client
//! (`Response::from_r2`): the worker never holds a file in its memory.

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;
use verge::{
    Bucket, Conditional, Env, HttpMetadata, Include, Method, Object, R2Error, Range, Request,
    Response, Result, UploadedPart,
};

#[verge::worker]
fn fetch(req: Request, env: Env) -> Result<Response> {
    let bucket = env.r2("FILES")?;
    let path = req.path().to_owned();
    if path == "/files" || path == "/files/" {
        return list(&req, &bucket);
    }
    if let Some(key) = path.strip_prefix("/files/") {
        return file(req, &bucket, &decode(key)?);
    }
    if let Some(key) = path.strip_prefix("/uploads/") {
        return upload(req, &bucket, &decode(key)?);
    }
    Ok(Response::not_found())
}

/// The key a path segment names, percent-decoded.
fn decode(key: &str) -> Result<String> {
    percent_decode_str(key)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| verge::Error::BadRequest("the key is not UTF-8".into()))
}

fn file(req: Request, bucket: &Bucket, key: &str) -> Result<Response> {
    match req.method() {
        Method::Put => {
            let content_type = req.header("content-type").map(str::to_owned);
            let object = bucket
                .put(key, req.bytes())
                .http_metadata(HttpMetadata {
                    content_type,
                    ..HttpMetadata::default()
                })
                .execute()
                .map_err(client_error)?
                .expect("a put without only_if always writes");
            Ok(Response::json(&describe(&object))?.with_status(201))
        }
        Method::Get => {
            let mut get = bucket.get(key);
            if let Some(range) = req.header("range").and_then(Range::from_header) {
                get = get.range(range);
            }
            if let Some(etags) = req.header("if-none-match") {
                get = get.only_if(Conditional {
                    etag_does_not_match: Some(etags.to_owned()),
                    ..Conditional::default()
                });
            }
            match get.execute() {
                Ok(Some(object)) if !object.has_body() => {
                    // The etag matched If-None-Match: the client's copy is
                    // current.
                    Ok(Response::empty()
                        .with_status(304)
                        .with_header("etag", &object.http_etag())?)
                }
                Ok(Some(object)) => Response::from_r2(object),
                Ok(None) => Ok(Response::not_found()),
                Err(R2Error::InvalidArgument(why)) => Ok(Response::error(format!("{why}\n"), 416)),
                Err(e) => Err(e.into()),
            }
        }
        Method::Head => match bucket.head(key)? {
            Some(object) => {
                let http = object.http_metadata();
                Ok(Response::empty()
                    .with_status(200)
                    .with_header("content-length", &object.size().to_string())?
                    .with_header("etag", &object.http_etag())?
                    .with_header(
                        "content-type",
                        http.content_type
                            .as_deref()
                            .unwrap_or("application/octet-stream"),
                    )?)
            }
            None => Ok(Response::not_found()),
        },
        Method::Delete => {
            bucket.delete(key)?;
            Ok(Response::empty())
        }
        _ => Ok(Response::error("use GET, HEAD, PUT or DELETE\n", 405)),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    delimiter: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn list(req: &Request, bucket: &Bucket) -> Result<Response> {
    let query: ListQuery = req.query()?;
    let mut list = bucket
        .list()
        .include([Include::HttpMetadata, Include::CustomMetadata]);
    if let Some(prefix) = query.prefix {
        list = list.prefix(prefix);
    }
    if let Some(delimiter) = query.delimiter {
        list = list.delimiter(delimiter);
    }
    if let Some(cursor) = query.cursor {
        list = list.cursor(cursor);
    }
    if let Some(limit) = query.limit {
        list = list.limit(limit);
    }
    let page = list.execute().map_err(client_error)?;
    Response::json(&json!({
        "objects": page.objects().iter().map(describe).collect::<Vec<_>>(),
        "delimited_prefixes": page.delimited_prefixes(),
        "truncated": page.truncated(),
        "cursor": page.cursor(),
    }))
}

#[derive(Deserialize)]
struct UploadQuery {
    upload_id: Option<String>,
    part: Option<u16>,
}

#[derive(Deserialize)]
struct Completion {
    parts: Vec<UploadedPart>,
}

fn upload(req: Request, bucket: &Bucket, key: &str) -> Result<Response> {
    let query: UploadQuery = req.query()?;
    let resume = |id: &str| bucket.resume_multipart_upload(key, id);
    match (req.method(), query.upload_id.as_deref(), query.part) {
        (Method::Post, None, _) => {
            let upload = bucket.create_multipart_upload(key).execute().map_err(client_error)?;
            Ok(Response::json(&json!({ "key": key, "upload_id": upload.upload_id() }))?
                .with_status(201))
        }
        (Method::Put, Some(id), Some(part)) => {
            let part = resume(id)?
                .upload_part(part, req.bytes())
                .map_err(client_error)?;
            Response::json(&part)
        }
        (Method::Post, Some(id), _) => {
            let completion: Completion = req.json()?;
            let object = resume(id)?.complete(completion.parts).map_err(client_error)?;
            Ok(Response::json(&describe(&object))?.with_status(201))
        }
        (Method::Delete, Some(id), _) => {
            resume(id)?.abort().map_err(client_error)?;
            Ok(Response::empty())
        }
        _ => Err(verge::Error::BadRequest(
            "POST to start an upload; PUT ?upload_id=&part= for a part; POST ?upload_id= to complete; DELETE ?upload_id= to abort".into(),
        )),
    }
}

/// A request the bucket refused as bad input is the client's error (400);
/// anything else is the server's.
fn client_error(error: R2Error) -> verge::Error {
    match error {
        R2Error::InvalidKey(m)
        | R2Error::TooLarge(m)
        | R2Error::InvalidArgument(m)
        | R2Error::NoSuchUpload(m) => verge::Error::BadRequest(m),
        other => other.into(),
    }
}

fn describe(object: &Object) -> serde_json::Value {
    json!({
        "key": object.key(),
        "size": object.size(),
        "etag": object.etag(),
        "uploaded": object.uploaded(),
        "content_type": object.http_metadata().content_type,
        "custom_metadata": object.custom_metadata(),
    })
}
