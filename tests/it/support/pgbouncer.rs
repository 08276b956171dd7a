//! A real PgBouncer (Debian's package, 1.18) in transaction mode in front of the shared
//! PostgreSQL, started by the test on a free loopback port with a deliberately small server pool
//! so that client connections really share server connections.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::process::free_port;

pub struct PgBouncer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl PgBouncer {
    /// Start PgBouncer with `server_pool` server connections per database.
    pub async fn start(server_pool: u32) -> PgBouncer {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("PgBouncer is needed for these tests (Debian package `pgbouncer`)");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("emergence-pgb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port=5432\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {server_pool}\n\
             max_client_conn = 2000\n\
             ignore_startup_parameters = extra_float_digits\n\
             idle_transaction_timeout = 5\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let mut cmd = Command::new(bin);
        // PgBouncer refuses to run as root: as root, run it as the `postgres` user.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if root {
            let _ = Command::new("chown")
                .args(["-R", "postgres:", &dir.display().to_string()])
                .status();
            cmd.args(["-u", "postgres"]);
        }
        let mut child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            // It logs to its file too (`log()`).
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return PgBouncer { port, child, dir };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "PgBouncer did not listen on {port}: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
    }

    /// The database `name` through this pooler.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The database `name` through this pooler, with another port in front (a fault proxy).
    pub fn url_via(&self, proxy_port: u16, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{proxy_port}/{name}")
    }

    /// What PgBouncer logged (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
