//! The HTTP embedders against a local HTTP/1.1 server that records what the client sent and
//! answers in the OpenAI and Ollama response shapes. Only 127.0.0.1 is ever contacted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use ragged_embed::{EmbedError, Embedder, OllamaEmbedder, OpenAiEmbedder, embedder_for_env};
use serde_json::{Map, Value, json};

/// One request as the server received it.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    /// Header names lowercased.
    headers: BTreeMap<String, String>,
    body: Value,
}

/// A canned answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

fn answer(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        body: body.into(),
    }
}

/// Serves exactly `answers.len()` requests on 127.0.0.1, in order, then stops; joining the handle
/// returns what was received.
fn serve(answers: Vec<Answer>) -> (String, JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds a local port");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let handle = std::thread::spawn(move || {
        let mut received = Vec::new();
        for answer in answers {
            let (mut stream, _) = listener.accept().expect("accepts");
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("sets a timeout");
            let mut reader = BufReader::new(stream.try_clone().expect("clones the stream"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("reads the request line");
            let mut parts = request_line.split_whitespace();
            let method = parts.next().expect("a method").to_owned();
            let path = parts.next().expect("a path").to_owned();
            let mut headers = BTreeMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("reads a header");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').expect("a header line");
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
            let length: usize = headers
                .get("content-length")
                .expect("a content-length")
                .parse()
                .expect("a number");
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("reads the body");
            let body = serde_json::from_slice(&body).expect("the body is JSON");
            received.push(Received {
                method,
                path,
                headers,
                body,
            });
            let reason = match answer.status {
                200 => "OK",
                401 => "Unauthorized",
                404 => "Not Found",
                _ => "Error",
            };
            let response = format!(
                "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                answer.status,
                answer.body.len(),
                answer.body
            );
            stream.write_all(response.as_bytes()).expect("answers");
        }
        received
    });
    (base, handle)
}

fn options(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

fn no_env(_: &str) -> Option<std::ffi::OsString> {
    None
}

#[test]
fn openai_sends_model_input_and_key_and_orders_results_by_index() {
    let body = json!({
        "object": "list",
        "data": [
            {"object": "embedding", "index": 2, "embedding": [0.0, 0.0, 2.5]},
            {"object": "embedding", "index": 0, "embedding": [3.0, 4.0, 0.0]},
            {"object": "embedding", "index": 1, "embedding": [0.1, -0.2, 0.3]}
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3, "total_tokens": 3}
    });
    let (base, server) = serve(vec![answer(200, body.to_string())]);
    let opts = options(json!({
        "base_url": format!("{base}/v1/"),
        "api_key": "sk-test",
        "build_prompt_template": "passage: ",
        "query_prompt_template": "query: "
    }));
    let embedder = embedder_for_env("openai", "text-embedding-3-small", &opts, &no_env).expect("an openai embedder");
    let vectors = embedder.embed(&["first", "second", "third"]).expect("embeds");
    // In `index` order, and exactly as returned: LEANN does not normalise OpenAI vectors.
    assert_eq!(
        vectors,
        vec![vec![3.0, 4.0, 0.0], vec![0.1, -0.2, 0.3], vec![0.0, 0.0, 2.5]]
    );

    let received = server.join().expect("the server ran");
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/embeddings")
    );
    assert_eq!(
        request.headers.get("authorization").map(String::as_str),
        Some("Bearer sk-test")
    );
    assert_eq!(
        request.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        request.body,
        json!({"model": "text-embedding-3-small", "input": ["passage: first", "passage: second", "passage: third"]})
    );
}

#[test]
fn openai_takes_the_key_from_the_environment_and_sends_none_without_one() {
    let one = json!({"data": [{"index": 0, "embedding": [1.0]}]}).to_string();
    let (base, server) = serve(vec![answer(200, one.clone()), answer(200, one)]);
    let env = |name: &str| match name {
        "OPENAI_API_KEY" => Some("sk-env".into()),
        "OPENAI_BASE_URL" => Some(format!("{base}/v1").into()),
        _ => None,
    };
    let from_env = embedder_for_env("openai", "m", &Map::new(), &env).expect("an openai embedder");
    assert_eq!(from_env.embed(&["x"]).expect("embeds"), vec![vec![1.0]]);
    let keyless = OpenAiEmbedder::new(&format!("{base}/v1"), "m", None);
    assert_eq!(keyless.embed(&["x"]).expect("embeds"), vec![vec![1.0]]);

    let received = server.join().expect("the server ran");
    assert_eq!(
        received[0].headers.get("authorization").map(String::as_str),
        Some("Bearer sk-env")
    );
    assert_eq!(
        received[0].body,
        json!({"model": "m", "input": ["x"]}),
        "no template without one"
    );
    assert!(
        !received[1].headers.contains_key("authorization"),
        "{:?}",
        received[1].headers
    );
}

#[test]
fn openai_errors_name_the_url_status_and_body() {
    let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
    let (base, server) = serve(vec![answer(401, body.to_string())]);
    let embedder = OpenAiEmbedder::new(&format!("{base}/v1"), "m", Some("bad".into()));
    let err = embedder.embed(&["x"]).expect_err("refused");
    let message = err.to_string();
    match &err {
        EmbedError::Http { url, status, .. } => {
            assert_eq!(url, &format!("{base}/v1/embeddings"));
            assert_eq!(*status, Some(401));
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    assert!(message.contains(&format!("{base}/v1/embeddings")), "{message}");
    assert!(
        message.contains("401") && message.contains("Incorrect API key provided"),
        "{message}"
    );
    server.join().expect("the server ran");
}

#[test]
fn openai_refuses_a_short_answer_and_blank_texts() {
    let short = json!({"data": [{"index": 0, "embedding": [1.0, 2.0]}]});
    let (base, server) = serve(vec![answer(200, short.to_string())]);
    let embedder = OpenAiEmbedder::new(&format!("{base}/v1"), "m", None);
    let message = embedder.embed(&["a", "b"]).expect_err("refused").to_string();
    assert!(message.contains("sent 2 texts") && message.contains(&base), "{message}");
    server.join().expect("the server ran");

    // Refused before any request (the server above has stopped: a request would fail as HTTP).
    let err = embedder.embed(&["fine", "  "]).expect_err("refused");
    assert!(matches!(err, EmbedError::Invalid(_)), "{err}");
    assert!(embedder.embed(&[]).expect("nothing to do").is_empty());
}

#[test]
fn ollama_batches_by_32_and_normalises_like_leann() {
    let texts: Vec<String> = (0..40).map(|i| format!("text {i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Vector i is [i + 1, 2 (i + 1)], so each answer is checkable against its text.
    let vectors_for = |range: std::ops::Range<usize>| {
        let embeddings: Vec<Value> = range.map(|i| json!([(i + 1) as f32, 2.0 * (i + 1) as f32])).collect();
        json!({"model": "nomic-embed-text", "embeddings": embeddings}).to_string()
    };
    let (base, server) = serve(vec![answer(200, vectors_for(0..32)), answer(200, vectors_for(32..40))]);
    let opts = options(json!({"host": format!("{base}/"), "prompt_template": "search_document: "}));
    let embedder = embedder_for_env("ollama", "nomic-embed-text", &opts, &no_env).expect("an ollama embedder");
    let vectors = embedder.embed(&texts).expect("embeds");

    assert_eq!(vectors.len(), 40);
    for (i, vector) in vectors.iter().enumerate() {
        let (x, y) = ((i + 1) as f32, 2.0 * (i + 1) as f32);
        let norm = (f64::from(x) * f64::from(x) + f64::from(y) * f64::from(y)).sqrt() as f32 + 1e-8;
        assert_eq!(vector, &vec![x / norm, y / norm], "vector {i}");
    }

    let received = server.join().expect("the server ran");
    assert_eq!(received.len(), 2);
    for (request, range) in received.iter().zip([0..32, 32..40]) {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/api/embed"));
        assert!(!request.headers.contains_key("authorization"));
        let input: Vec<String> = range.map(|i| format!("search_document: text {i}")).collect();
        assert_eq!(request.body, json!({"model": "nomic-embed-text", "input": input}));
    }
}

#[test]
fn ollama_errors_name_the_url_status_and_body() {
    let (base, server) = serve(vec![
        answer(
            404,
            json!({"error": "model \"nope\" not found, try pulling it first"}).to_string(),
        ),
        answer(200, json!({"embeddings": [[1.0]]}).to_string()),
    ]);
    let embedder = OllamaEmbedder::new(&base, "nope");
    let message = embedder.embed(&["x"]).expect_err("refused").to_string();
    assert!(message.contains(&format!("{base}/api/embed")), "{message}");
    assert!(
        message.contains("404") && message.contains("try pulling it first"),
        "{message}"
    );

    // An answer with fewer embeddings than texts is an error, not a shorter result.
    let message = embedder.embed(&["x", "y"]).expect_err("refused").to_string();
    assert!(message.contains("sent 2 texts but got 1"), "{message}");
    server.join().expect("the server ran");
}

#[test]
fn an_unreachable_server_is_named() {
    // A port that was just free: nothing listens on it any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("address")
        .port();
    let embedder = OllamaEmbedder::new(&format!("127.0.0.1:{port}"), "m");
    let err = embedder.embed(&["x"]).expect_err("nothing listens");
    match &err {
        EmbedError::Http { url, status: None, .. } => assert_eq!(url, &format!("http://127.0.0.1:{port}/api/embed")),
        other => panic!("expected a transport error, got {other:?}"),
    }
}
