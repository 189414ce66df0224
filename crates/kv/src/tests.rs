use super::*;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use log::{End, Records, crc32, encode};
use platform::fuzz::{Rng, cases};

const T0: u64 = 1_700_000_000_000;

struct Fixture {
    engine: Engine,
    session: Session,
    now: u64,
    log: Vec<Mutation>,
}

impl Fixture {
    fn new() -> Self {
        Self::with(Settings::default())
    }
    fn with(settings: Settings) -> Self {
        Fixture {
            engine: Engine::new(settings),
            session: Session::default(),
            now: T0,
            log: Vec::new(),
        }
    }
    /// Runs a command, returns its reply as text.
    fn run(&mut self, args: &[&str]) -> String {
        let mut out = Vec::new();
        let effect = self.engine.execute(
            &Request::from_args(args),
            &mut self.session,
            self.now,
            &mut out,
        );
        self.log.extend(effect.mutation);
        String::from_utf8(out).expect("replies here are text")
    }
}

#[test]
fn ping_echo_quit_select() {
    let mut f = Fixture::new();
    assert_eq!(f.run(&["PING"]), "+PONG\r\n");
    assert_eq!(f.run(&["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(
        f.run(&["PING", "a", "b"]),
        "-ERR wrong number of arguments for 'ping' command\r\n"
    );
    assert_eq!(f.run(&["ECHO", "x y"]), "$3\r\nx y\r\n");
    assert_eq!(
        f.run(&["ECHO"]),
        "-ERR wrong number of arguments for 'echo' command\r\n"
    );
    assert_eq!(f.run(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(f.run(&["SELECT", "1"]), "-ERR DB index is out of range\r\n");
    assert_eq!(
        f.run(&["SELECT", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    let mut out = Vec::new();
    let e = f
        .engine
        .execute(&Request::from_args(&["QUIT"]), &mut f.session, T0, &mut out);
    assert_eq!(out, b"+OK\r\n");
    assert!(e.close);
}

#[test]
fn unknown_commands_and_arity() {
    let mut f = Fixture::new();
    assert_eq!(
        f.run(&["foo", "a", "b"]),
        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        f.run(&["foo"]),
        "-ERR unknown command 'foo', with args beginning with: \r\n"
    );
    assert_eq!(
        f.run(&["a\r\nb", "x\ny"]),
        "-ERR unknown command 'a  b', with args beginning with: 'x y' \r\n"
    );
    let long = "z".repeat(300);
    let reply = f.run(&[&long, &long, "more"]);
    assert_eq!(
        reply,
        format!(
            "-ERR unknown command '{}', with args beginning with: '{}' \r\n",
            "z".repeat(128),
            "z".repeat(128)
        )
    );
    assert_eq!(
        f.run(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        f.run(&["get", "a", "b"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        f.run(&["SET", "a"]),
        "-ERR wrong number of arguments for 'set' command\r\n"
    );
    assert_eq!(
        f.run(&["MSET", "a", "1", "b"]),
        "-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(
        f.run(&["CONFIG"]),
        "-ERR wrong number of arguments for 'config' command\r\n"
    );
    assert_eq!(
        f.run(&["CONFIG", "GET"]),
        "-ERR wrong number of arguments for 'config|get' command\r\n"
    );
    assert_eq!(
        f.run(&["CONFIG", "bogus"]),
        "-ERR unknown subcommand 'bogus'. Try CONFIG HELP.\r\n"
    );
    assert_eq!(
        f.run(&["client", "kill"]),
        "-ERR unknown subcommand 'kill'. Try CLIENT HELP.\r\n"
    );
    assert!(f.log.is_empty());
}

#[test]
fn get_set_and_options() {
    let mut f = Fixture::new();
    assert_eq!(f.run(&["GET", "k"]), "$-1\r\n");
    assert_eq!(f.run(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(f.run(&["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(f.run(&["SET", "k", "w", "NX"]), "$-1\r\n");
    assert_eq!(f.run(&["SET", "new", "w", "XX"]), "$-1\r\n");
    assert_eq!(f.run(&["SET", "k", "w", "XX"]), "+OK\r\n");
    assert_eq!(f.run(&["SET", "k", "x", "GET"]), "$1\r\nw\r\n");
    assert_eq!(f.run(&["SET", "g", "1", "get"]), "$-1\r\n");
    assert_eq!(f.run(&["SET", "k", "y", "NX", "GET"]), "$1\r\nx\r\n");
    assert_eq!(f.run(&["GET", "k"]), "$1\r\nx\r\n");
    for bad in [
        &["SET", "k", "v", "NX", "XX"][..],
        &["SET", "k", "v", "EX"],
        &["SET", "k", "v", "EX", "1", "PX", "1"],
        &["SET", "k", "v", "KEEPTTL", "EX", "1"],
        &["SET", "k", "v", "BOGUS"],
    ] {
        assert_eq!(f.run(bad), "-ERR syntax error\r\n", "{bad:?}");
    }
    assert_eq!(
        f.run(&["SET", "k", "v", "EX", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    for bad in ["0", "-1", "9223372036854775807"] {
        assert_eq!(
            f.run(&["SET", "k", "v", "EX", bad]),
            "-ERR invalid expire time in 'set' command\r\n",
            "{bad}"
        );
    }
    // Writes that did not happen are not logged.
    assert_eq!(f.log.len(), 4);
}

#[test]
fn expiry_lazy_and_swept() {
    let mut f = Fixture::new();
    assert_eq!(f.run(&["SET", "a", "1", "EX", "10"]), "+OK\r\n");
    assert_eq!(f.run(&["SET", "b", "2", "PX", "500"]), "+OK\r\n");
    let at = (T0 + 2000).to_string();
    assert_eq!(f.run(&["SET", "c", "3", "PXAT", &at]), "+OK\r\n");
    assert_eq!(f.run(&["SET", "d", "4"]), "+OK\r\n");
    assert_eq!(f.engine.expiring(), 3);
    f.now += 499;
    assert_eq!(f.run(&["GET", "b"]), "$1\r\n2\r\n");
    f.now += 1;
    assert_eq!(f.run(&["GET", "b"]), "$-1\r\n");
    assert_eq!(f.engine.expiring(), 2);
    f.now += 1500;
    assert_eq!(f.engine.sweep(f.now, 10), 1); // c
    assert_eq!(f.run(&["DBSIZE"]), ":2\r\n");
    // KEEPTTL keeps it; a plain SET drops it; INCR keeps it.
    assert_eq!(f.run(&["SET", "a", "5", "KEEPTTL"]), "+OK\r\n");
    assert_eq!(f.run(&["INCR", "a"]), ":6\r\n");
    assert_eq!(f.engine.expiring(), 1);
    f.now = T0 + 10_000;
    assert_eq!(f.run(&["EXISTS", "a", "d"]), ":1\r\n");
    assert_eq!(f.engine.expiring(), 0);
    // Overwriting a key's expiry leaves one index entry.
    for i in 1..100 {
        assert_eq!(f.run(&["SET", "x", "v", "EX", &i.to_string()]), "+OK\r\n");
    }
    assert_eq!(f.engine.expiring(), 1);
    assert_eq!(f.run(&["SET", "x", "v"]), "+OK\r\n");
    assert_eq!(f.engine.expiring(), 0);
    // EXAT in the past deletes.
    assert_eq!(f.run(&["SET", "d", "v", "EXAT", "1"]), "+OK\r\n");
    assert_eq!(f.run(&["EXISTS", "d"]), ":0\r\n");
    assert_eq!(
        f.log.last(),
        Some(&Mutation::Del {
            keys: vec![b"d".to_vec()]
        })
    );
}

#[test]
fn del_exists_mget_mset_dbsize_flushall() {
    let mut f = Fixture::new();
    assert_eq!(f.run(&["MSET", "a", "1", "b", "2", "a", "3"]), "+OK\r\n");
    assert_eq!(
        f.run(&["MGET", "a", "b", "c"]),
        "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n"
    );
    assert_eq!(f.run(&["EXISTS", "a", "a", "c"]), ":2\r\n");
    assert_eq!(f.run(&["DBSIZE"]), ":2\r\n");
    assert_eq!(f.run(&["DEL", "a", "c", "a"]), ":1\r\n");
    assert_eq!(f.run(&["DEL", "zz"]), ":0\r\n");
    assert_eq!(f.run(&["FLUSHALL", "BOGUS"]), "-ERR syntax error\r\n");
    assert_eq!(f.run(&["FLUSHALL", "ASYNC"]), "+OK\r\n");
    assert_eq!(f.run(&["DBSIZE"]), ":0\r\n");
    assert_eq!(
        f.log,
        [
            Mutation::MSet {
                pairs: vec![
                    (b"a".to_vec(), b"1".to_vec()),
                    (b"b".to_vec(), b"2".to_vec()),
                    (b"a".to_vec(), b"3".to_vec())
                ]
            },
            Mutation::Del {
                keys: vec![b"a".to_vec()]
            },
            Mutation::FlushAll
        ]
    );
}

#[test]
fn incr_family() {
    let mut f = Fixture::new();
    assert_eq!(f.run(&["INCR", "n"]), ":1\r\n");
    assert_eq!(f.run(&["INCRBY", "n", "41"]), ":42\r\n");
    assert_eq!(f.run(&["DECR", "n"]), ":41\r\n");
    assert_eq!(f.run(&["DECRBY", "n", "-9"]), ":50\r\n");
    assert_eq!(f.run(&["GET", "n"]), "$2\r\n50\r\n");
    assert_eq!(
        f.run(&["INCRBY", "n", "1.5"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    f.run(&["SET", "s", "abc"]);
    assert_eq!(
        f.run(&["INCR", "s"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    f.run(&["SET", "s", " 1"]);
    assert_eq!(
        f.run(&["INCR", "s"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    f.run(&["SET", "m", "9223372036854775807"]);
    assert_eq!(
        f.run(&["INCR", "m"]),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(
        f.run(&["DECRBY", "m", "-9223372036854775808"]),
        "-ERR decrement would overflow\r\n"
    );
    assert_eq!(f.run(&["DECRBY", "m", "9223372036854775807"]), ":0\r\n");
}

#[test]
fn keys_with_patterns() {
    let mut f = Fixture::new();
    f.run(&[
        "MSET", "user:1", "a", "user:2", "b", "user:10", "c", "other", "d",
    ]);
    f.run(&["SET", "user:3", "e", "PX", "1"]);
    f.now += 1;
    let keys = |f: &mut Fixture, p: &str| {
        let reply = f.run(&["KEYS", p]);
        let mut lines: Vec<&str> = reply.split("\r\n").skip(2).step_by(2).collect();
        lines.retain(|l| !l.is_empty());
        lines.sort_unstable();
        (
            reply.split("\r\n").next().map(String::from),
            lines.join(","),
        )
    };
    assert_eq!(
        keys(&mut f, "*"),
        (Some("*4".into()), "other,user:1,user:10,user:2".into())
    );
    assert_eq!(
        keys(&mut f, "user:?"),
        (Some("*2".into()), "user:1,user:2".into())
    );
    assert_eq!(
        keys(&mut f, "user:[^1]*"),
        (Some("*1".into()), "user:2".into())
    );
    assert_eq!(keys(&mut f, "nothing*"), (Some("*0".into()), String::new()));
}

#[test]
fn client_command_config_info() {
    let mut f = Fixture::new();
    assert_eq!(f.run(&["CLIENT", "GETNAME"]), "$-1\r\n");
    assert_eq!(f.run(&["CLIENT", "SETNAME", "bench"]), "+OK\r\n");
    assert_eq!(f.run(&["client", "getname"]), "$5\r\nbench\r\n");
    assert_eq!(
        f.run(&["CLIENT", "SETNAME", "a b"]),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(f.run(&["COMMAND", "DOCS"]), "*0\r\n");
    assert_eq!(f.run(&["COMMAND"]), "*0\r\n");
    assert_eq!(
        f.run(&["CONFIG", "GET", "save"]),
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(
        f.run(&["CONFIG", "GET", "appendonly"]),
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    );
    assert_eq!(f.run(&["CONFIG", "GET", "nope"]), "*0\r\n");
    assert!(f.run(&["INFO"]).contains("redis_version:"));
}

#[test]
fn max_keys() {
    let mut f = Fixture::with(Settings {
        max_keys: 2,
        ..Settings::default()
    });
    let full = "-ERR max keys reached (kv_max_keys = 2)\r\n";
    assert_eq!(f.run(&["SET", "a", "1"]), "+OK\r\n");
    assert_eq!(f.run(&["SET", "b", "1", "PX", "5"]), "+OK\r\n");
    assert_eq!(f.run(&["SET", "c", "1"]), full);
    assert_eq!(f.run(&["INCR", "c"]), full);
    assert_eq!(f.run(&["MSET", "a", "2", "c", "3"]), full);
    // Existing keys can still be written and read.
    assert_eq!(f.run(&["SET", "a", "9"]), "+OK\r\n");
    assert_eq!(f.run(&["MSET", "a", "2", "b", "3"]), "+OK\r\n");
    assert_eq!(f.run(&["GET", "a"]), "$1\r\n2\r\n");
    // An expired key makes room.
    f.run(&["SET", "b", "1", "PX", "5"]);
    f.now += 5;
    assert_eq!(f.run(&["SET", "c", "1"]), "+OK\r\n");
}

#[test]
fn records_off_gives_none() {
    let mut f = Fixture::with(Settings {
        record: false,
        ..Settings::default()
    });
    f.run(&["SET", "a", "1"]);
    f.run(&["DEL", "a"]);
    assert!(f.log.is_empty());
}

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
}

fn sample_mutations(rng: &mut Rng, n: usize) -> Vec<Mutation> {
    (0..n)
        .map(|_| {
            fn bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
                let len = rng.below(max) as usize;
                rng.bytes(len)
            }
            match rng.below(4) {
                0 => Mutation::Set {
                    key: bytes(rng, 8),
                    value: bytes(rng, 40),
                    expire_at: if rng.chance(50) {
                        Some(rng.next_u64())
                    } else {
                        None
                    },
                },
                1 => Mutation::MSet {
                    pairs: (0..rng.below(4))
                        .map(|_| (rng.bytes(3), rng.bytes(5)))
                        .collect(),
                },
                2 => Mutation::Del {
                    keys: (0..rng.below(4)).map(|_| rng.bytes(3)).collect(),
                },
                _ => Mutation::FlushAll,
            }
        })
        .collect()
}

#[test]
fn log_round_trip_and_torn_tails() {
    let mut rng = Rng::new(0x6c6f_6701);
    for _ in 0..cases(200) {
        let n = rng.below(8) as usize;
        let ms = sample_mutations(&mut rng, n);
        let mut log = Vec::new();
        let mut ends = vec![0];
        for m in &ms {
            encode(m, &mut log);
            ends.push(log.len());
        }
        let mut r = Records::new(&log);
        assert_eq!(r.by_ref().collect::<Vec<_>>(), ms);
        assert_eq!(r.end(), End::Clean);
        // Cut anywhere: the whole records before the cut, then a torn end at the last boundary.
        for cut in 0..log.len() {
            let mut r = Records::new(&log[..cut]);
            let got: Vec<Mutation> = r.by_ref().collect();
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(got, ms[..whole]);
            let end = r.end();
            if ends.contains(&cut) {
                assert_eq!(end, End::Clean);
            } else {
                assert_eq!(end, End::Torn { at: ends[whole] });
            }
            assert_eq!(end.valid_len(cut), Some(ends[whole]));
        }
    }
}

#[test]
fn log_corruption_is_caught_never_panics() {
    let mut rng = Rng::new(0x6c6f_6702);
    for _ in 0..cases(2000) {
        let n = 1 + rng.below(6) as usize;
        let ms = sample_mutations(&mut rng, n);
        let mut log = Vec::new();
        let mut ends = vec![0];
        for m in &ms {
            encode(m, &mut log);
            ends.push(log.len());
        }
        // Flip 1-3 bytes somewhere.
        let first = rng.below(log.len() as u64) as usize;
        let mut bad = log.clone();
        bad[first] ^= 1 + rng.below(255) as u8;
        for _ in 0..rng.below(3) {
            let i = rng.below(log.len() as u64) as usize;
            bad[i] = rng.next_u64() as u8;
        }
        let lowest = (0..log.len()).find(|&i| bad[i] != log[i]);
        let mut r = Records::new(&bad);
        let got: Vec<Mutation> = r.by_ref().collect();
        let Some(lowest) = lowest else {
            assert_eq!(got, ms);
            continue;
        };
        // Every record before the damaged one is read back intact; the damaged one is never
        // returned (a CRC-32 misses no change of 1-3 bytes in a short payload... except a
        // length change that tears: then reading stops too).
        let damaged = ends.iter().filter(|&&e| e <= lowest).count() - 1;
        assert_eq!(got, ms[..damaged], "flip at {lowest}");
        assert_ne!(r.end(), End::Clean);
        assert_eq!(r.end().valid_len(bad.len()), Some(ends[damaged]));
    }
    // Pure garbage.
    for _ in 0..cases(2000) {
        let len = rng.below(64) as usize;
        let garbage = rng.bytes(len);
        let mut r = Records::new(&garbage);
        for _ in r.by_ref() {}
        assert_ne!(r.end(), End::NotYet);
    }
}

/// A reference model: a BTreeMap and the obvious rules.
#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>,
}

impl Model {
    fn live(&mut self, k: &[u8], now: u64) -> Option<Vec<u8>> {
        match self.map.get(k) {
            Some((_, Some(at))) if *at <= now => {
                self.map.remove(k);
                None
            }
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }
    fn reply(&mut self, args: &[Vec<u8>], now: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        match name.as_str() {
            "GET" => match self.live(&args[1], now) {
                Some(v) => resp::bulk(&mut out, &v),
                None => resp::null(&mut out),
            },
            "SET" => {
                let px: Option<u64> = args
                    .get(4)
                    .map(|v| core::str::from_utf8(v).unwrap().parse().unwrap());
                self.map
                    .insert(args[1].clone(), (args[2].clone(), px.map(|p| now + p)));
                resp::ok(&mut out);
            }
            "DEL" => {
                let mut n = 0;
                for k in &args[1..] {
                    if self.live(k, now).is_some() {
                        self.map.remove(k);
                        n += 1;
                    }
                }
                resp::integer(&mut out, n);
            }
            "EXISTS" => {
                let n = args[1..]
                    .iter()
                    .filter(|k| self.live(k, now).is_some())
                    .count();
                resp::integer(&mut out, n as i64);
            }
            "INCRBY" => {
                let by: i64 = core::str::from_utf8(&args[2]).unwrap().parse().unwrap();
                let ttl = self.map.get(&args[1]).and_then(|e| e.1);
                let cur = self.live(&args[1], now);
                match cur.map(|v| {
                    String::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                }) {
                    Some(None) => resp::error(&mut out, ERR_INT),
                    c => {
                        let n = c.flatten().unwrap_or(0) + by;
                        let ttl = if self.map.contains_key(&args[1]) {
                            ttl
                        } else {
                            None
                        };
                        self.map
                            .insert(args[1].clone(), (n.to_string().into_bytes(), ttl));
                        resp::integer(&mut out, n);
                    }
                }
            }
            "MGET" => {
                resp::array(&mut out, args.len() - 1);
                for k in &args[1..] {
                    match self.live(k, now) {
                        Some(v) => resp::bulk(&mut out, &v),
                        None => resp::null(&mut out),
                    }
                }
            }
            "MSET" => {
                for p in args[1..].chunks(2) {
                    self.map.insert(p[0].clone(), (p[1].clone(), None));
                }
                resp::ok(&mut out);
            }
            "FLUSHALL" => {
                self.map.clear();
                resp::ok(&mut out);
            }
            _ => unreachable!(),
        }
        out
    }
}

#[test]
fn model_based_random_commands_and_replay() {
    let mut rng = Rng::new(0x6b76_6d6f);
    for _ in 0..cases(100) {
        let mut engine = Engine::new(Settings::default());
        let mut session = Session::default();
        let mut model = Model::default();
        let mut log = Vec::new();
        let mut now = T0;
        let keys: Vec<Vec<u8>> = (0..6).map(|i| vec![b'k', b'0' + i]).collect();
        for _ in 0..300 {
            let k = |rng: &mut Rng| keys[rng.below(keys.len() as u64) as usize].clone();
            let mut args: Vec<Vec<u8>> = match rng.below(8) {
                0 => vec![b"GET".to_vec(), k(&mut rng)],
                1 => {
                    let mut a = vec![
                        b"SET".to_vec(),
                        k(&mut rng),
                        rng.below(100).to_string().into_bytes(),
                    ];
                    if rng.chance(20) {
                        a[2] = b"x".to_vec();
                    }
                    if rng.chance(40) {
                        a.push(b"PX".to_vec());
                        a.push((1 + rng.below(50)).to_string().into_bytes());
                    }
                    a
                }
                2 => vec![b"DEL".to_vec(), k(&mut rng), k(&mut rng)],
                3 => vec![b"EXISTS".to_vec(), k(&mut rng), k(&mut rng)],
                4 => vec![
                    b"INCRBY".to_vec(),
                    k(&mut rng),
                    (rng.below(20) as i64 - 10).to_string().into_bytes(),
                ],
                5 => vec![b"MGET".to_vec(), k(&mut rng), k(&mut rng), k(&mut rng)],
                6 => vec![
                    b"MSET".to_vec(),
                    k(&mut rng),
                    b"1".to_vec(),
                    k(&mut rng),
                    b"2".to_vec(),
                ],
                _ if rng.chance(5) => vec![b"FLUSHALL".to_vec()],
                _ => vec![b"GET".to_vec(), k(&mut rng)],
            };
            if rng.chance(50) {
                args[0] = args[0].to_ascii_lowercase();
            }
            let mut out = Vec::new();
            let effect = engine.execute(&Request::from_args(&args), &mut session, now, &mut out);
            assert_eq!(out, model.reply(&args, now), "{args:?}");
            if let Some(m) = effect.mutation {
                encode(&m, &mut log);
            }
            if rng.chance(10) {
                engine.sweep(now, rng.below(3) as usize);
            }
            now += rng.below(10);
        }
        // Replaying the log rebuilds the same live store.
        let mut replayed = Engine::new(Settings::default());
        let mut records = Records::new(&log);
        for m in records.by_ref() {
            replayed.apply(m, now);
        }
        assert_eq!(records.end(), End::Clean);
        let sorted = |e: &Engine| {
            let mut v: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = e
                .entries(now)
                .map(|(k, v, t)| (k.to_vec(), v.to_vec(), t))
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&engine), sorted(&replayed));
        let model_live: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = model
            .map
            .iter()
            .filter(|(_, (_, t))| t.is_none_or(|t| t > now))
            .map(|(k, (v, t))| (k.clone(), v.clone(), *t))
            .collect();
        assert_eq!(sorted(&engine), model_live);
        // The list of keys with an expiry has each such key once, at the slot its entry holds.
        assert_eq!(
            engine.expiring(),
            engine
                .map
                .values()
                .filter(|e| e.expire_at.is_some())
                .count()
        );
        for (slot, key) in engine.volatile.iter().enumerate() {
            let e = &engine.map[key];
            assert!(e.expire_at.is_some() && e.slot == slot, "{key:?} at {slot}");
        }
    }
}

#[test]
fn random_requests_never_panic() {
    let mut rng = Rng::new(0x6b76_7266);
    let words = [
        "GET",
        "SET",
        "DEL",
        "EXISTS",
        "INCR",
        "DECR",
        "INCRBY",
        "DECRBY",
        "MGET",
        "MSET",
        "KEYS",
        "DBSIZE",
        "FLUSHALL",
        "PING",
        "ECHO",
        "SELECT",
        "CLIENT",
        "COMMAND",
        "CONFIG",
        "INFO",
        "QUIT",
        "NX",
        "XX",
        "GET",
        "EX",
        "PX",
        "EXAT",
        "PXAT",
        "KEEPTTL",
        "-1",
        "0",
        "9223372036854775807",
        "-9223372036854775808",
        "*",
        "[a-",
        "\\",
        "k",
        "",
    ];
    let mut engine = Engine::new(Settings {
        max_keys: 5,
        ..Settings::default()
    });
    let mut session = Session::default();
    for _ in 0..cases(20_000) {
        let n = 1 + rng.below(6) as usize;
        let args: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                if rng.chance(10) {
                    let len = rng.below(6) as usize;
                    rng.bytes(len)
                } else {
                    rng.pick(&words).as_bytes().to_vec()
                }
            })
            .collect();
        let mut out = Vec::new();
        let now = rng.edgy_u64() >> 1;
        engine.execute(&Request::from_args(&args), &mut session, now, &mut out);
        assert!(!out.is_empty());
        assert!(engine.len() <= 5);
    }
}
