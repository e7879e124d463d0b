//! The text of a request, found in its shape: a prompt string, an OpenAI
//! `messages` list (the user turns; content parts' `text`), or a body with
//! `messages`, `prompt` or `input` (embeddings). Done here, on the native
//! side, so that routing never calls back into Python for it.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyMapping, PySequence, PyString};

use super::extract::{opt_text, utf8, utf8_with};
use crate::errors::ZetaError;

/// How many bodies may sit inside one another (`{"messages": {"messages":
/// ...}}`) before the request is refused. Real requests nest one; the bound
/// keeps a hostile one from walking the stack. Content is read one level of
/// parts deep only, so no other shape nests.
pub const MAX_NESTING: usize = 32;

/// What one level of a request holds: the answer, or a body inside it.
enum Level<'py> {
    Read((String, usize, bool)),
    Inner(Bound<'py, PyAny>),
}

/// A request's text, its message count and whether it is an embedding
/// request (`endpoint` ending in `/embeddings`, or a body with `input`).
pub fn request_text(
    request: &Bound<'_, PyAny>,
    endpoint: Option<&str>,
) -> PyResult<(String, usize, bool)> {
    let embedding = endpoint.is_some_and(|e| e.trim_end_matches('/').ends_with("embeddings"));
    let mut level = request.clone();
    // A loop, not recursion: the depth is bounded and the stack stays flat.
    for _ in 0..=MAX_NESTING {
        match read_level(&level, embedding)? {
            Level::Read(found) => return Ok(found),
            Level::Inner(inner) => level = inner,
        }
    }
    Err(ZetaError::TooDeep {
        field: "request",
        limit: MAX_NESTING,
    }
    .into())
}

fn read_level<'py>(request: &Bound<'py, PyAny>, embedding: bool) -> PyResult<Level<'py>> {
    if let Ok(text) = request.cast::<PyString>() {
        return Ok(Level::Read((
            utf8(text, "request")?.to_owned(),
            1,
            embedding,
        )));
    }
    if let Ok(body) = request.cast::<PyMapping>() {
        if body.contains("messages")? {
            return Ok(Level::Inner(body.get_item("messages")?));
        }
        if body.contains("prompt")? {
            let text = input_text(&body.get_item("prompt")?, "prompt")?;
            return Ok(Level::Read((text, 1, embedding)));
        }
        if body.contains("input")? {
            let text = input_text(&body.get_item("input")?, "input")?;
            return Ok(Level::Read((text, 1, true)));
        }
        let mut keys = Vec::new();
        for key in body.keys()?.iter() {
            keys.push(key.str()?.to_string_lossy().into_owned());
        }
        return Err(PyTypeError::new_err(format!(
            "request must have messages, prompt or input, got keys: {}",
            keys.join(", ")
        )));
    }
    if let Ok(messages) = request.cast::<PySequence>() {
        let mut user = Vec::new();
        let count = messages.len()?;
        // Interned keys: no string made and hashed per message.
        let py = request.py();
        let (role_key, content_key) = (intern!(py, "role"), intern!(py, "content"));
        for (position, message) in messages.try_iter()?.enumerate() {
            let message = message?;
            let Ok(message) = message.cast::<PyMapping>() else {
                continue;
            };
            let role = if message.contains(role_key)? {
                Some(message.get_item(role_key)?)
            } else {
                None
            };
            // A message without a role is the user's.
            let is_user = role.as_ref().is_none_or(|r| {
                r.cast::<PyString>()
                    .is_ok_and(|r| r.to_str().is_ok_and(|r| r == "user"))
            });
            if is_user {
                let content = if message.contains(content_key)? {
                    Some(message.get_item(content_key)?)
                } else {
                    None
                };
                user.push(content.map_or(Ok(String::new()), |c| content_text(&c, position))?);
            }
        }
        return Ok(Level::Read((user.join("\n"), count.max(1), embedding)));
    }
    let type_name = request.get_type().name()?.to_string();
    Err(PyTypeError::new_err(format!(
        "request must be a str, a messages list or a request dict, got {type_name}"
    )))
}

/// A message's content: a string, or the `text` of its content parts
/// (`[{"type": "text", "text": ...}, {"type": "image_url", ...}]`).
fn content_text(content: &Bound<'_, PyAny>, message: usize) -> PyResult<String> {
    if let Ok(text) = content.cast::<PyString>() {
        return Ok(utf8_with(text, || format!("messages[{message}].content"))?.to_owned());
    }
    let Ok(parts) = content.cast::<PySequence>() else {
        return Ok(String::new());
    };
    let mut texts = Vec::new();
    for (position, part) in parts.try_iter()?.enumerate() {
        let part = part?;
        let Ok(part) = part.cast::<PyMapping>() else {
            continue;
        };
        if part.contains("text")? {
            if let Ok(text) = part.get_item("text")?.cast::<PyString>() {
                let field = || format!("messages[{message}].content[{position}].text");
                texts.push(utf8_with(text, field)?.to_owned());
            }
        }
    }
    Ok(texts.join("\n"))
}

/// A `prompt` or `input`: a string, or the strings of a list.
fn input_text(value: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(utf8(text, field)?.to_owned());
    }
    let Ok(items) = value.cast::<PySequence>() else {
        return Ok(String::new());
    };
    let mut texts = Vec::new();
    for (position, item) in items.try_iter()?.enumerate() {
        if let Ok(text) = item?.cast::<PyString>() {
            texts.push(utf8_with(text, || format!("{field}[{position}]"))?.to_owned());
        }
    }
    Ok(texts.join("\n"))
}

/// `zeta_fast.profile(request, *, endpoint=None)`: profiles a request of
/// any shape `request_text` reads.
#[pyfunction]
#[pyo3(signature = (request, *, endpoint = None))]
pub fn profile(
    request: &Bound<'_, PyAny>,
    endpoint: Option<&Bound<'_, PyAny>>,
) -> PyResult<super::profile::PyRequestProfile> {
    let (text, turns, embedding) = request_text(request, opt_text(endpoint, "endpoint")?)?;
    super::profile::_profile_text(&text, turns, embedding)
}

/// The text, message count and embedding flag `profile` reads in a request.
#[pyfunction]
#[pyo3(name = "request_text", signature = (request, *, endpoint = None))]
pub fn py_request_text(
    request: &Bound<'_, PyAny>,
    endpoint: Option<&Bound<'_, PyAny>>,
) -> PyResult<(String, usize, bool)> {
    request_text(request, opt_text(endpoint, "endpoint")?)
}
