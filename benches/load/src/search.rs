//! `sori-load search`: message search at scale. Fills rooms with Korean chat lines (stems with
//! particles and endings, some Latin words and numbers), measures how fast they become
//! searchable, times queries in both orders, and the lag between a send and its message being
//! findable while messages keep coming at a steady rate.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Client, percentile, register, rss_mib};

const STEMS: &[&str] = &[
    "회의",
    "배포",
    "일정",
    "서버",
    "점검",
    "보고서",
    "계약",
    "고객사",
    "예산",
    "휴가",
    "출장",
    "교육",
    "보안",
    "장애",
    "복구",
    "테스트",
    "리뷰",
    "회고",
    "스프린트",
    "요구사항",
    "설계",
    "문서",
    "위키",
    "공지",
    "인사",
    "총무",
    "회식",
    "점심",
    "주간",
    "월간",
    "실적",
    "분기",
    "마감",
    "검토",
    "승인",
    "요청",
    "확인",
    "공유",
    "정리",
    "준비",
    "연락",
    "메일",
    "전화",
    "사무실",
    "회의실",
    "예약",
    "프로젝트",
    "고객",
    "제품",
    "출시",
    "버전",
    "업데이트",
    "로그",
    "오류",
    "데이터",
    "백업",
    "네트워크",
    "방화벽",
    "계정",
    "권한",
    "비밀번호",
    "설정",
    "알림",
];
const ENDINGS: &[&str] = &[
    "",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "에",
    "에서",
    "으로",
    "로",
    "와",
    "과",
    "도",
    "만",
    "했습니다",
    "합니다",
    "해요",
    "했어요",
    "하겠습니다",
    "드립니다",
    "부탁드립니다",
    "입니다",
];
const LATIN: &[&str] = &[
    "API", "PR", "CI", "DB", "VPN", "ERP", "Jenkins", "release", "deploy", "staging", "hotfix",
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Words(u64);

impl Words {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn line(&mut self) -> String {
        let words = 4 + self.next(6);
        let mut line = Vec::with_capacity(words);
        for _ in 0..words {
            match self.next(10) {
                0 => line.push(LATIN[self.next(LATIN.len())].to_owned()),
                1 => line.push(format!("{}시", 1 + self.next(12))),
                _ => line.push(format!(
                    "{}{}",
                    STEMS[self.next(STEMS.len())],
                    ENDINGS[self.next(ENDINGS.len())]
                )),
            }
        }
        line.join(" ")
    }
}

fn body(term: &str, order: &str) -> Value {
    json!({"search_categories": {"room_events": {
        "search_term": term, "order_by": order, "filter": {"limit": 10}
    }}})
}

async fn count(client: &Client, term: &str) -> Result<u64, String> {
    let found = client
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/search",
            &body(term, "recent"),
        )
        .await?;
    Ok(found["search_categories"]["room_events"]["count"]
        .as_u64()
        .unwrap_or(0))
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    url: String,
    messages: usize,
    rooms: usize,
    concurrency: usize,
    queries: usize,
    rate: f64,
    seconds: u64,
    data_dir: Option<PathBuf>,
    pid: Option<u32>,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()
        .map_err(|e| e.to_string())?;
    let run = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64;
    let client = register(&http, &url, &format!("searcher{run}")).await?;
    let mut room_ids = Vec::new();
    for _ in 0..rooms {
        let room = client
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                &json!({}),
            )
            .await?;
        room_ids.push(room["room_id"].as_str().unwrap_or_default().to_owned());
    }
    let room_ids = Arc::new(room_ids);

    // 1. Fill: every line also carries "부하" so that one search counts them all.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let rooms = room_ids.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut words = Words(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    return Ok::<(), String>(());
                }
                let room = &rooms[i % rooms.len()];
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/f{i}");
                let text = format!("부하 {}", words.line());
                client
                    .call(
                        reqwest::Method::PUT,
                        &path,
                        &json!({"msgtype": "m.text", "body": text}),
                    )
                    .await?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let sent_in = started.elapsed();
    println!(
        "fill: {messages} messages in {:.1} s ({:.0} msg/s sent)",
        sent_in.as_secs_f64(),
        messages as f64 / sent_in.as_secs_f64()
    );
    loop {
        let indexed = count(&client, "부하").await?;
        if indexed >= messages as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let indexed_in = started.elapsed();
    let index_rate = messages as f64 / indexed_in.as_secs_f64();
    println!(
        "indexed: all {messages} searchable {:.1} s after the first send ({index_rate:.0} events/s end to end), {:.2} s after the last",
        indexed_in.as_secs_f64(),
        (indexed_in - sent_in).as_secs_f64()
    );

    // 2. Queries: one common word, two words, a rare word, a Latin prefix; both orders.
    let terms = [
        "회의",
        "배포 일정",
        "방화벽",
        "deplo",
        "서버 점검",
        "3시",
        "비밀번호를",
    ];
    let mut report = json!({
        "messages": messages,
        "send_msgs_per_s": messages as f64 / sent_in.as_secs_f64(),
        "index_events_per_s_end_to_end": index_rate,
    });
    for order in ["recent", "rank"] {
        let mut latencies = Vec::with_capacity(queries);
        for q in 0..queries {
            let term = terms[q % terms.len()];
            let started = Instant::now();
            client
                .call(
                    reqwest::Method::POST,
                    "/_matrix/client/v3/search",
                    &body(term, order),
                )
                .await?;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let (p50, p95) = (percentile(&latencies, 0.50), percentile(&latencies, 0.95));
        println!("query {order:<6}: {queries} queries   p50 {p50:>7.2} ms   p95 {p95:>7.2} ms");
        report[format!("query_{order}_p50_ms")] = p50.into();
        report[format!("query_{order}_p95_ms")] = p95.into();
    }

    // 3. Lag: messages at a steady rate, each with a word of its own; how long until it is
    // found.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * seconds as f64) as usize;
    let mut pollers = Vec::with_capacity(total);
    let mut ticks = tokio::time::interval(interval);
    for i in 0..total {
        ticks.tick().await;
        let room = &room_ids[i % room_ids.len()];
        // Ends in a letter: no marker is the beginning of another (words match as prefixes).
        let marker = format!("lagmark{run}x{i}z");
        client
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/lag{i}"),
                &json!({"msgtype": "m.text", "body": format!("지연 측정 {marker}")}),
            )
            .await?;
        let sent = Instant::now();
        let client = client.clone();
        pollers.push(tokio::spawn(async move {
            loop {
                if count(&client, &marker).await? >= 1 {
                    return Ok::<Duration, String>(sent.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut lags = Vec::with_capacity(total);
    for poller in pollers {
        lags.push(poller.await.map_err(|e| e.to_string())??);
    }
    lags.sort();
    let (p50, p95) = (percentile(&lags, 0.50), percentile(&lags, 0.95));
    println!(
        "lag at {rate} msg/s: {total} messages   p50 {p50:.1} ms   p95 {p95:.1} ms (send acknowledged → findable)"
    );
    report["lag_p50_ms"] = p50.into();
    report["lag_p95_ms"] = p95.into();

    if let Some(dir) = data_dir {
        let bytes = dir_size(&dir.join("search"));
        println!(
            "index on disk: {:.1} MiB ({:.0} bytes per message)",
            bytes as f64 / 1048576.0,
            bytes as f64 / (messages + total) as f64
        );
        report["index_mib"] = (bytes as f64 / 1048576.0).into();
    }
    if let Some(rss) = pid.and_then(rss_mib) {
        println!("server RSS: {rss:.1} MiB");
        report["rss_mib"] = rss.into();
    }
    Ok(report)
}
