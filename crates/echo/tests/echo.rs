//! End-to-end tests of the echo server: a real server on 127.0.0.1:0, real
//! HTTP clients (reqwest, and raw TCP where a client would normalise the
//! request away).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use gatehouse_echo::{EchoServer, MAX_BODY_BYTES, spawn};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server() -> EchoServer {
    spawn("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_json(url: String) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Sends raw bytes on a fresh connection and returns everything the server
/// answered until it closed the connection.
async fn raw(echo: &EchoServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(echo.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn args_single_and_repeated() {
    let echo = server().await;
    let v = get_json(format!(
        "{}/anything?one=1&many=a&many=b%20c&many=d+e&enc=%E2%9C%93",
        echo.base_url()
    ))
    .await;
    assert_eq!(
        v["args"],
        json!({"one": "1", "many": ["a", "b c", "d e"], "enc": "✓"})
    );
}

#[tokio::test]
async fn repeated_header_lines_come_back_as_an_array_and_names_are_title_cased() {
    let echo = server().await;
    let mut headers = HeaderMap::new();
    headers.append("x-multi", HeaderValue::from_static("first"));
    headers.append("x-multi", HeaderValue::from_static("second, with comma"));
    headers.insert("x-credential-client-id", HeaderValue::from_static("abc"));
    let v: Value = client()
        .get(format!("{}/anything", echo.base_url()))
        .headers(headers)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &v["headers"];
    assert_eq!(headers["X-Multi"], json!(["first", "second, with comma"]));
    assert_eq!(headers["X-Credential-Client-Id"], "abc");
    assert_eq!(headers["Host"], echo.addr.to_string());
    assert!(headers.get("x-multi").is_none());
}

#[tokio::test]
async fn method_origin_and_url() {
    let echo = server().await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = client()
            .request(
                method.clone(),
                format!("{}/anything/a/b?x=%20y", echo.base_url()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["method"], method.as_str());
        assert_eq!(v["origin"], "127.0.0.1");
        assert_eq!(
            v["url"],
            format!("http://{}/anything/a/b?x=%20y", echo.addr)
        );
    }
}

#[tokio::test]
async fn url_uses_the_host_header() {
    let echo = server().await;
    let v: Value = client()
        .get(format!("{}/anything?q=1", echo.base_url()))
        .header("host", "api.example.test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["url"], "http://api.example.test/anything?q=1");
    assert_eq!(v["headers"]["Host"], "api.example.test");
}

#[tokio::test]
async fn form_body() {
    let echo = server().await;
    let v: Value = client()
        .post(format!("{}/anything", echo.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Ada+Lovelace&tag=a&tag=b&pct=%26")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["form"],
        json!({"name": "Ada Lovelace", "tag": ["a", "b"], "pct": "&"})
    );
    assert_eq!(v["data"], "");
    assert_eq!(v["json"], Value::Null);
}

#[tokio::test]
async fn multipart_body() {
    let echo = server().await;
    let body = "--XX\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n\
                --XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
                Content-Type: text/plain\r\n\r\nfile content\r\n--XX--\r\n";
    let v: Value = client()
        .post(format!("{}/anything", echo.base_url()))
        .header("content-type", "multipart/form-data; boundary=XX")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["form"], json!({"field": "value"}));
    assert_eq!(v["files"], json!({"file": "file content"}));
    assert_eq!(v["data"], "");
}

#[tokio::test]
async fn json_body() {
    let echo = server().await;
    let v: Value = client()
        .post(format!("{}/anything", echo.base_url()))
        .json(&json!({"a": [1, 2], "b": {"c": null}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["json"], json!({"a": [1, 2], "b": {"c": null}}));
    assert_eq!(v["data"], r#"{"a":[1,2],"b":{"c":null}}"#);
    // Text that is not JSON: data only.
    let v: Value = client()
        .put(format!("{}/anything", echo.base_url()))
        .body("plain text")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["json"], Value::Null);
    assert_eq!(v["data"], "plain text");
}

#[tokio::test]
async fn non_utf8_body_is_a_base64_data_url() {
    let echo = server().await;
    let v: Value = client()
        .post(format!("{}/anything", echo.base_url()))
        .body(vec![0xff, 0x00, 0x80])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], "data:application/octet-stream;base64,/wCA");
    assert_eq!(v["json"], Value::Null);
}

#[tokio::test]
async fn status_codes() {
    let echo = server().await;
    // No redirect following: a 3xx must come back as is.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for code in [200u16, 201, 204, 302, 304, 401, 418, 429, 500, 503, 599] {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let response = client
                .request(method, format!("{}/status/{code}", echo.base_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), code);
            assert!(response.bytes().await.unwrap().is_empty());
        }
    }
    for bad in ["100", "101", "99", "600", "abc", "-1", "2000"] {
        let response = client
            .get(format!("{}/status/{bad}", echo.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = response.json().await.unwrap();
        assert!(v["message"].is_string());
    }
}

#[tokio::test]
async fn delay_sleeps_then_echoes() {
    let echo = server().await;
    let started = Instant::now();
    let v = get_json(format!("{}/delay/0.1?a=1", echo.base_url())).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(v["args"], json!({"a": "1"}));
    assert_eq!(v["method"], "GET");
    for bad in ["x", "-1", "NaN", "inf"] {
        let response = client()
            .get(format!("{}/delay/{bad}", echo.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn bytes_count_and_seed() {
    let echo = server().await;
    for n in [0usize, 1, 1000, 65_537] {
        let response = client()
            .get(format!("{}/bytes/{n}", echo.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        assert_eq!(response.content_length(), Some(n as u64));
        assert_eq!(response.bytes().await.unwrap().len(), n);
    }
    let fetch = |seed: u32| {
        let url = format!("{}/bytes/4096?seed={seed}", echo.base_url());
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    assert_eq!(fetch(7).await, fetch(7).await);
    assert_ne!(fetch(7).await, fetch(8).await);
    let response = client()
        .get(format!("{}/bytes/104857601", echo.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn large_bytes_are_streamed() {
    let echo = server().await;
    const N: u64 = 50 * 1024 * 1024;
    let mut response = client()
        .get(format!("{}/bytes/{N}", echo.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.content_length(), Some(N));
    let (mut total, mut chunks, mut largest) = (0u64, 0u32, 0usize);
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
        largest = largest.max(chunk.len());
        chunks += 1;
    }
    assert_eq!(total, N);
    // Many chunks, each small: the answer was never one 50 MiB buffer.
    assert!(chunks > 100, "{chunks} chunks");
    assert!(largest <= 1024 * 1024, "largest chunk {largest}");
}

#[tokio::test]
async fn stream_bytes_are_chunked() {
    let echo = server().await;
    let answer = raw(
        &echo,
        b"GET /stream-bytes/25?chunk_size=10&seed=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{answer}");
    assert!(!lower.contains("content-length"), "{answer}");
    let response = client()
        .get(format!("{}/stream-bytes/100000", echo.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), 100_000);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let echo = server().await;
    // Exactly the limit is accepted.
    let response = client()
        .post(format!("{}/anything", echo.base_url()))
        .body(vec![b'a'; MAX_BODY_BYTES])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["data"].as_str().unwrap().len(), MAX_BODY_BYTES);

    // One byte more, announced by Content-Length.
    let response = client()
        .post(format!("{}/anything", echo.base_url()))
        .body(vec![b'a'; MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = response.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("larger"));

    // Chunked, so the limit is found while reading.
    let mut request = b"POST /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    let chunk = vec![b'b'; 1024 * 1024];
    for _ in 0..11 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&echo, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""message""#), "{answer}");
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let echo = server().await;
    let get = client()
        .get(format!("{}/anything", echo.base_url()))
        .send()
        .await
        .unwrap();
    let get_length = get.content_length().unwrap();
    assert!(get_length > 0);
    let head = client()
        .head(format!("{}/anything", echo.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], "application/json");
    // (reqwest's `content_length()` is the body's, 0 for HEAD: read the header.)
    let head_length: u64 = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The same JSON, but for `"method":"HEAD"`, one character longer than GET.
    assert_eq!(head_length, get_length + 1);
    assert!(head.bytes().await.unwrap().is_empty());

    // The length of a large download is announced, and nothing is sent.
    let answer = raw(
        &echo,
        b"HEAD /bytes/104857600 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-length: 104857600"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\n"),
        "no body after the head: {answer}"
    );
}

#[tokio::test]
async fn root_and_not_found() {
    let echo = server().await;
    let response = client().get(echo.base_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("echo"));
    for path in ["/nope", "/anythingelse", "/status", "/bytes"] {
        let response = client()
            .post(format!("{}{path}", echo.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = response.json().await.unwrap();
        assert_eq!(v, json!({"message": "not found"}));
    }
}

#[tokio::test]
async fn bad_input_gives_clean_answers() {
    let echo = server().await;
    // Malformed percent-encoding and percent-encoded invalid UTF-8.
    let answer = raw(
        &echo,
        b"GET /anything?a=%ZZ&b=%FF&%=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""a":"%ZZ""#), "{answer}");
    assert!(
        answer.contains(r#""b":"\u{fffd}""#) || answer.contains("\"b\":\"\u{fffd}\""),
        "{answer}"
    );

    // Raw invalid UTF-8 in the request target: refused or echoed, never a crash.
    let answer = raw(
        &echo,
        b"GET /anything?a=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // A header larger than hyper accepts.
    let mut request = b"GET /anything HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    request.extend(std::iter::repeat_n(b'h', 1024 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    let answer = raw(&echo, &request).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Non-UTF-8 header value: read as Latin-1.
    let answer = raw(
        &echo,
        b"GET /anything HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains(r#""X-Latin":"café""#), "{answer}");

    // The server is still fine.
    get_json(format!("{}/anything", echo.base_url())).await;
}

#[tokio::test]
async fn keep_alive_and_h2c() {
    let echo = server().await;
    let http1 = client();
    for _ in 0..3 {
        let response = http1
            .get(format!("{}/anything", echo.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.status(), StatusCode::OK);
    }

    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2
        .post(format!("{}/anything?x=1", echo.base_url()))
        .header("x-h2", "yes")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["headers"]["X-H2"], "yes");
    assert_eq!(v["headers"]["Host"], echo.addr.to_string());
    assert_eq!(v["url"], format!("http://{}/anything?x=1", echo.addr));
    assert_eq!(v["data"], "hi");
    let response = h2
        .get(format!("{}/bytes/100000", echo.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), 100_000);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let echo = server().await;
    let addr = echo.addr;
    let in_flight = tokio::spawn(client().get(format!("http://{addr}/delay/0.5")).send());
    // Let the request reach the server before asking it to stop.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    echo.shutdown().await.unwrap();
    // `shutdown` waited for the in-flight request...
    assert!(started.elapsed() >= Duration::from_millis(200));
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["method"], "GET");
    // ...and no longer accepts connections.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let echo = server().await;
    let addr = echo.addr;
    drop(echo);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
