package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// backgroundLine is the start of the line nsbind prints when the command
// exits 0 and leaves processes running.
const backgroundLine = "(it went to the background); serving until"

// servesDaemon checks a run whose command daemonized: nsbind says so and
// keeps running, the server answers on every published socket, and after
// SIGTERM to nsbind every process of the run (comm) is gone, nsbind has
// exited with want and the host ports are free.
func servesDaemon(t *testing.T, r *nsbindRun, comm, body string, want int) {
	t.Helper()
	r.waitStderr(backgroundLine)
	select {
	case <-r.done:
		t.Fatalf("nsbind exited (%d) when the command went to the background", r.code)
	default:
	}
	httpGet(t, netip.MustParseAddr("127.0.0.1"), r.addr(4), body)
	httpGet(t, netip.IPv6Loopback(), r.addr(6), body)
	var procs []int
	for _, p := range descendants(r.cmd.Process.Pid) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		if strings.TrimSpace(string(b)) == comm {
			procs = append(procs, p)
		}
	}
	if len(procs) == 0 {
		t.Fatalf("no %s process below nsbind", comm)
	}
	syscall.Kill(r.cmd.Process.Pid, syscall.SIGTERM)
	if code := r.wait(20 * time.Second); code != want {
		t.Errorf("exit %d after SIGTERM, want %d", code, want)
	}
	for _, p := range procs {
		if alive(p) {
			t.Errorf("%s %d still runs after nsbind exited", comm, p)
		}
	}
	for _, ap := range []netip.AddrPort{r.addr(4), r.addr(6)} {
		if !refused(ap) {
			t.Errorf("host port %s still open after nsbind exited", ap)
		}
	}
}

// Acceptance 3: nginx with its default "daemon on" forks its master, which
// goes to the background, and exits 0: nsbind serves it until SIGTERM, which
// it passes on (nginx then exits 0), and nothing is left.
func TestDaemonNginx(t *testing.T) {
	nginx := needProgram(t, "nginx")
	dir, prepare := unprivilegedRun(t)
	conf := fmt.Sprintf(`master_process on;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 80;
    listen [::]:80;
    location / { return 200 "hello from the nginx daemon\n"; }
  }
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startNsbindIn(t, dir, prepare, "-p", "80:0", "--", nginx,
		"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	servesDaemon(t, r, "nginx", "hello from the nginx daemon", 0)
}

// Acceptance 3: "apachectl start", Debian's script, starts apache2 -k start,
// whose parent forks the server into the background and exits 0.
func TestDaemonApachectl(t *testing.T) {
	apachectl := needProgram(t, "apachectl")
	modules := "/usr/lib/apache2/modules"
	if _, err := os.Stat(filepath.Join(modules, "mod_mpm_event.so")); err != nil {
		needProgram(t, "apache2 modules in "+modules)
	}
	dir, prepare := unprivilegedRun(t)
	// apachectl reads $APACHE_CONFDIR/apache2.conf and the envvars file
	// beside it; the run and lock directories exist, so it creates none
	// under /var.
	conf := fmt.Sprintf(`ServerRoot %[1]s
ServerName localhost
PidFile %[1]s/apache2.pid
Listen 80
ErrorLog %[1]s/error.log
LoadModule mpm_event_module %[2]s/mod_mpm_event.so
LoadModule authz_core_module %[2]s/mod_authz_core.so
LoadModule dir_module %[2]s/mod_dir.so
DirectoryIndex index.html
DocumentRoot %[1]s/htdocs
<Directory %[1]s/htdocs>
  Require all granted
</Directory>
`, dir, modules)
	envvars := fmt.Sprintf("export APACHE_RUN_DIR=%[1]s/run\nexport APACHE_LOCK_DIR=%[1]s/lock\nexport APACHE_PID_FILE=%[1]s/apache2.pid\nexport APACHE_LOG_DIR=%[1]s\n", dir)
	for _, d := range []string{"run/socks", "lock", "htdocs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"apache2.conf":      conf,
		"envvars":           envvars,
		"htdocs/index.html": "hello from apache\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getuid() == 0 {
		chownTree(t, dir)
	}
	r := startNsbindIn(t, dir, func(cmd *exec.Cmd) {
		if prepare != nil {
			prepare(cmd)
		}
		// APACHE_STARTED_BY_SYSTEMD keeps apachectl from handing the
		// start to systemctl on a host whose pid 1 is systemd (inside
		// the PID namespace pid 1 is the helper anyway).
		cmd.Env = append(os.Environ(), "APACHE_CONFDIR="+dir, "APACHE_STARTED_BY_SYSTEMD=1")
	}, "-p", "80:0", "--", apachectl, "start")
	servesDaemon(t, r, "apache2", "hello from apache", 0)
}

// chownTree gives dir and what is in it to the test user, who runs nsbind
// when the test runs as root.
func chownTree(t *testing.T, dir string) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Lchown(p, int(sys.Uid), int(sys.Gid))
		}
		return err
	})
}

// The status of a run whose command went to the background is that of the
// last process to end, and nsbind's signals reach the processes left
// behind; a command that fails still ends the run at once, with its own
// status, whatever it left running.
func TestDaemonStatus(t *testing.T) {
	t.Run("last process", func(t *testing.T) {
		// sigwait prints "ready" and exits 42 on SIGTERM.
		r := startNsbind(t, "--", "sh", "-c", `"$0" __server sigwait & exit 0`, os.Args[0])
		r.waitStderr("nsbind: sh exited 0 leaving 1 process running (it went to the background); serving until it exits")
		r.waitOutput("ready")
		syscall.Kill(r.cmd.Process.Pid, syscall.SIGTERM)
		if code := r.wait(15 * time.Second); code != 42 {
			t.Fatalf("exit %d, want the background process's 42", code)
		}
		if !strings.Contains(r.stdout.String(), "got SIGTERM") {
			t.Fatalf("the background process did not get nsbind's SIGTERM:\n%s", r.stdout.String())
		}
	})
	t.Run("quiet", func(t *testing.T) {
		r := startNsbind(t, "-q", "--", "sh", "-c", `"$0" __server sigwait & exit 0`, os.Args[0])
		r.waitOutput("ready")
		syscall.Kill(r.cmd.Process.Pid, syscall.SIGTERM)
		r.wait(15 * time.Second)
		if s := r.stderr.String(); s != "" {
			t.Fatalf("-q printed:\n%s", s)
		}
	})
	t.Run("failing command", func(t *testing.T) {
		r := startNsbind(t, "--", "sh", "-c", `"$0" __server sigwait & exit 4`, os.Args[0])
		if code := r.wait(15 * time.Second); code != 4 {
			t.Fatalf("exit %d, want the command's 4", code)
		}
		if strings.Contains(r.stderr.String(), backgroundLine) {
			t.Fatalf("a failing command was served in the background:\n%s", r.stderr.String())
		}
	})
}
