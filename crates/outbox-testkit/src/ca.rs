//! A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost,
//! made with openssl in a temporary directory (nothing is committed). The extensions are
//! the ones rustls insists on.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a test CA; the directory is deleted on drop.
pub struct TestCa {
    dir: tempfile::TempDir,
    /// The CA certificate (PEM): the trust anchor for clients.
    pub ca_cert: PathBuf,
    /// The server certificate (PEM), for 127.0.0.1 and localhost.
    pub server_cert: PathBuf,
    /// The server's private key (PEM).
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/install-peers.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    /// Generates a CA and a server certificate signed by it, for 127.0.0.1 and localhost.
    pub fn generate() -> TestCa {
        TestCa::for_names(&[])
    }

    /// Generates a CA and a server certificate signed by it, valid for 127.0.0.1,
    /// localhost and each of `dns_names` (`mx.a.test`, `mta-sts.a.test`, `*.b.test`).
    pub fn for_names(dns_names: &[&str]) -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let mut alt_names = String::from("IP:127.0.0.1,DNS:localhost");
        for name in dns_names {
            alt_names.push_str(",DNS:");
            alt_names.push_str(name);
        }
        std::fs::write(
            d.join("server.ext"),
            format!(
                "subjectAltName={alt_names}\n\
                 basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
        ca_args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Outbox Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca_args);
        let mut csr_args = vec!["req"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(d, &csr_args);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        TestCa {
            ca_cert: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A self-signed server certificate for 127.0.0.1 / localhost, made the way most guides
/// say (`openssl req -x509`, which marks it a CA too); the directory is deleted on drop.
pub struct SelfSigned {
    dir: tempfile::TempDir,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl SelfSigned {
    /// Generates one; `name` tells two apart in a directory listing.
    pub fn generate(name: &str) -> SelfSigned {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
        );
        SelfSigned {
            cert: dir.path().join(cert),
            key: dir.path().join(key),
            dir,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
