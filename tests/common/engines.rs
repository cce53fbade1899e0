//! The cluster-wide counting engine as real processes: Redis (Debian's `redis-server`) and
//! envoyproxy/ratelimit (built by `make ratelimit` into `.tools/bin/service_cmd`), each on free
//! ports, with the shipped service configuration (`envoy/ratelimit/config/apim.yaml`). Readiness
//! is polled (Redis answers PING, the service's `/healthcheck` answers 200); `Drop` stops them.
//! `pause` and `resume` (SIGSTOP, SIGCONT) make a process hang without closing its sockets: a
//! slow engine, as a client sees one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, repo_root, try_request, Scratch};

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([name, &child.id().to_string()]).status().expect("run kill");
    assert!(status.success(), "kill {name} failed");
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/<pid>/task/*/stat`).
fn every_thread_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    let mut seen = 0;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            return false;
        }
        seen += 1;
    }
    seen > 0
}

fn wait_until(what: &str, child: &mut Child, log: &PathBuf, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        if ready() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} was not ready within 60 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis server (no persistence) on a port of its own.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    scratch: Scratch,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis { port: free_port(), child: None, scratch: Scratch::new("redis") };
        redis.restart();
        redis
    }

    /// Starts it again on the same port (after [`Redis::stop`]).
    pub fn restart(&mut self) {
        assert!(
            Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()),
            "redis-server is missing: run `make test`, which installs it"
        );
        let log = self.scratch.0.join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.scratch.0)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let port = self.port;
        wait_until("redis-server", &mut child, &log, || ping(port));
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A command's reply, for inspecting counters (`["KEYS", "*"]`).
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut message = format!("*{}\r\n", args.len());
        for arg in args {
            message.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(message.as_bytes()).expect("write to redis");
        thread::sleep(Duration::from_millis(50));
        let mut buffer = [0u8; 65536];
        let read = stream.read(&mut buffer).unwrap_or(0);
        String::from_utf8_lossy(&buffer[..read]).into_owned()
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// envoyproxy/ratelimit with the shipped configuration, counting in `redis`.
pub struct RateLimit {
    pub grpc_port: u16,
    pub http_port: u16,
    debug_port: u16,
    redis_port: u16,
    child: Option<Child>,
    scratch: Scratch,
}

pub fn ratelimit_binary() -> PathBuf {
    let path = repo_root().join(".tools/bin/service_cmd");
    assert!(path.exists(), "envoyproxy/ratelimit is not built at {}: run `make test`, which builds it", path.display());
    path
}

impl RateLimit {
    pub fn start(redis: &Redis) -> RateLimit {
        RateLimit::start_with_config(redis, &super::read_repo_file("envoy/ratelimit/config/apim.yaml"))
    }

    /// Starts it with another configuration file (a domain other than the filter's, say).
    pub fn start_with_config(redis: &Redis, config: &str) -> RateLimit {
        let mut service = RateLimit::not_started(redis);
        let config_dir = service.scratch.0.join("runtime/ratelimit/config");
        std::fs::create_dir_all(&config_dir).expect("create the service's config directory");
        std::fs::write(config_dir.join("apim.yaml"), config).expect("write the service's config");
        service.restart();
        service
    }

    /// A service on free ports with a scratch directory of its own, not started yet.
    fn not_started(redis: &Redis) -> RateLimit {
        RateLimit {
            grpc_port: free_port(),
            http_port: free_port(),
            debug_port: free_port(),
            redis_port: redis.port,
            child: None,
            scratch: Scratch::new("ratelimit"),
        }
    }

    /// Starts it as docs/HOWTO.md's "Count across Envoy nodes" says, with that command's own
    /// environment (and nothing else), on free ports and a scratch runtime root: the command's
    /// `mkdir` and `cp` make the configuration directory, and each of its `NAME=value` settings
    /// is passed as written, but for `/tmp/rls` and the ports.
    pub fn start_as_documented(redis: &Redis) -> RateLimit {
        let howto = super::read_repo_file("docs/HOWTO.md");
        let block = howto
            .split("```")
            .find(|block| block.starts_with("sh") && block.contains(".tools/bin/service_cmd"))
            .expect("HOWTO shows the rate-limit service's command");
        let text = block.replace("\\\n", " ");
        let mut service = RateLimit::not_started(redis);
        let root = service.scratch.0.join("runtime");
        let substitute = |value: &str| -> String {
            value
                .replace("/tmp/rls", &root.display().to_string())
                .replace("6379", &service.redis_port.to_string())
                .replace("8089", &service.grpc_port.to_string())
                .replace("8070", &service.http_port.to_string())
                .replace("6070", &service.debug_port.to_string())
        };
        // The `mkdir -p <dir> && cp envoy/ratelimit/config/apim.yaml <dir>/` line, done as the
        // shell does it: the file lands where `cp` puts it (a misspelt destination leaves the
        // service without the filter's domain), not where the test expects it.
        let copy = text.lines().find(|line| line.contains("mkdir -p")).expect("HOWTO makes the config directory");
        let words: Vec<&str> = copy.split_whitespace().collect();
        let directory = words.get(2).map(|dir| substitute(dir)).expect("mkdir's directory");
        let cp = words.iter().position(|word| *word == "cp").expect("HOWTO copies the service's configuration");
        let (source, destination) = match words.get(cp + 1..) {
            Some([source, destination]) => (*source, PathBuf::from(substitute(destination))),
            other => panic!("`cp <source> <destination>` in HOWTO's command, not {other:?}"),
        };
        std::fs::create_dir_all(&directory).expect("create the documented config directory");
        let destination = match destination.is_dir() {
            true => destination.join(Path::new(source).file_name().expect("cp's source names a file")),
            false => destination,
        };
        std::fs::write(&destination, super::read_repo_file(source)).expect("copy as HOWTO's `cp` does");
        // The settings before `.tools/bin/service_cmd`: each one `NAME=value` (anything else is
        // not a setting, and the shell would run it) and a setting the service reads (it ignores
        // a name it does not know, so a misspelt one would leave its default in place unseen).
        let command = text.lines().find(|line| line.contains("service_cmd")).expect("the command line");
        let known = String::from_utf8_lossy(&std::fs::read(ratelimit_binary()).expect("read the service's binary"))
            .into_owned();
        let settings: Vec<(String, String)> = command
            .split_whitespace()
            .take_while(|word| !word.contains("service_cmd"))
            .map(|word| {
                let (name, value) = word.split_once('=').unwrap_or_else(|| panic!("`{word}` is no NAME=value setting"));
                assert!(known.contains(&format!("envconfig:\"{name}\"")), "the service reads no setting `{name}`");
                (name.to_string(), substitute(value))
            })
            .collect();
        for (name, value) in
            [("REDIS_URL", &format!("127.0.0.1:{}", service.redis_port)), ("GRPC_PORT", &service.grpc_port.to_string())]
        {
            assert!(settings.iter().any(|(n, v)| n == name && v == value), "HOWTO's command sets {name}: {settings:?}");
        }
        // The test runs its own Redis and Envoys: the HOWTO's Redis must listen where REDIS_URL
        // points (6379, above), and its Envoy cluster be pointed at GRPC_PORT (8089), or a user
        // following it has a service that reaches no Redis, or an Envoy that reaches no service.
        let redis =
            text.lines().find(|line| line.trim_start().starts_with("redis-server")).expect("HOWTO starts Redis");
        let words: Vec<&str> = redis.split_whitespace().collect();
        assert!(
            words.windows(2).any(|pair| pair == ["--port", "6379"]),
            "HOWTO's Redis is on REDIS_URL's port: {redis}"
        );
        assert!(howto.contains("`127.0.0.1:8089`"), "HOWTO points Envoy's cluster at the service's GRPC_PORT");
        service.spawn(settings.into_iter().collect());
        service
    }

    /// Starts it again on the same ports (after [`RateLimit::stop`]).
    pub fn restart(&mut self) {
        let settings = [
            ("REDIS_SOCKET_TYPE", "tcp".to_string()),
            ("REDIS_URL", format!("127.0.0.1:{}", self.redis_port)),
            ("RUNTIME_ROOT", self.scratch.0.join("runtime").display().to_string()),
            ("RUNTIME_SUBDIRECTORY", "ratelimit".to_string()),
            ("RUNTIME_APPDIRECTORY", "config".to_string()),
            ("RUNTIME_WATCH_ROOT", "false".to_string()),
            ("RUNTIME_IGNOREDOTFILES", "true".to_string()),
            ("USE_STATSD", "false".to_string()),
            ("DISABLE_STATS", "true".to_string()),
            ("HOST", "127.0.0.1".to_string()),
            ("PORT", self.http_port.to_string()),
            ("GRPC_HOST", "127.0.0.1".to_string()),
            ("GRPC_PORT", self.grpc_port.to_string()),
            ("DEBUG_HOST", "127.0.0.1".to_string()),
            ("DEBUG_PORT", self.debug_port.to_string()),
            ("LOG_LEVEL", "warn".to_string()),
        ];
        self.spawn(settings.into_iter().map(|(name, value)| (name.to_string(), value)).collect());
    }

    /// Runs the service with exactly this environment, until its health check answers.
    fn spawn(&mut self, settings: Vec<(String, String)>) {
        let log = self.scratch.0.join("ratelimit.log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("create log");
        let mut child = Command::new(ratelimit_binary())
            .env_clear()
            .envs(settings)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn the rate-limit service");
        let port = self.http_port;
        wait_until("envoyproxy/ratelimit", &mut child, &log, || {
            try_request(port, "GET", "/healthcheck", &[], None).is_ok_and(|response| response.status == 200)
        });
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Makes it hang: connections stay open, nothing is answered. Returns once every thread of
    /// the process is stopped (a signal is delivered to each thread in its own time).
    pub fn pause(&self) {
        let child = self.child.as_ref().expect("running");
        signal(child, "-STOP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !every_thread_stopped(child.id()) {
            assert!(Instant::now() < deadline, "the rate-limit service did not stop within 5 s of SIGSTOP");
            thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running"), "-CONT");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("ratelimit.log")).unwrap_or_default()
    }
}

impl Drop for RateLimit {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.stop();
    }
}
