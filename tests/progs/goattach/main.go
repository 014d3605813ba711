// goattach: Go programs for the attach tests (issue 15), built with
// CGO_ENABLED=0 by the tests (a static binary; run with GOMAXPROCS > 1).
//
//	goattach serve
//
// An HTTP server on 127.0.0.1:0 answering "hello PATH". Prints
// "listening PORT gomaxprocs=N" once it listens. A busy goroutine keeps the
// runtime's async preemption (SIGURG) going meanwhile. Exits 3 after 120 s.
//
//	goattach client
//
// Prints "ready pid=P gomaxprocs=N", then reads one command per line on
// stdin and answers each with one line:
//
//	dial PORT   a new TCP connection to 127.0.0.1:PORT; the first one that
//	            works is kept (the "established" one): "dial PORT ok" or
//	            "dial PORT err ERRNAME"
//	echo TEXT   TEXT\n on the kept connection, and the reply line back:
//	            "echo ok REPLY" or "echo err WHAT"
//	status      "status"
//	exit        exit 0
//
// Exits 0 at EOF on stdin, 3 after 120 s.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

var names = map[syscall.Errno]string{
	syscall.EACCES:        "EACCES",
	syscall.ECONNREFUSED:  "ECONNREFUSED",
	syscall.EPERM:         "EPERM",
	syscall.ENOSYS:        "ENOSYS",
	syscall.EINTR:         "EINTR",
	syscall.EFAULT:        "EFAULT",
	syscall.EINVAL:        "EINVAL",
	syscall.ETIMEDOUT:     "ETIMEDOUT",
	syscall.ENETUNREACH:   "ENETUNREACH",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
	syscall.ECONNRESET:    "ECONNRESET",
	syscall.EPIPE:         "EPIPE",
}

// errName: the errno's name, or the error's text with spaces replaced.
func errName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if n, ok := names[e]; ok {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

func serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	go func() { // busy: async preemption sends SIGURG
		x := 0
		for {
			for j := 0; j < 1e6; j++ {
				x += j
			}
			runtime.Gosched()
		}
	}()
	fmt.Printf("listening %d gomaxprocs=%d\n", ln.Addr().(*net.TCPAddr).Port, runtime.GOMAXPROCS(0))
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	fmt.Println("serve:", err)
	os.Exit(1)
}

func client() {
	fmt.Printf("ready pid=%d gomaxprocs=%d\n", os.Getpid(), runtime.GOMAXPROCS(0))
	var kept net.Conn
	var keptR *bufio.Reader
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "dial" && len(f) == 2:
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+f[1], 10*time.Second)
			if err != nil {
				fmt.Printf("dial %s err %s\n", f[1], errName(err))
				continue
			}
			if kept == nil {
				kept, keptR = c, bufio.NewReader(c)
			} else {
				c.Close()
			}
			fmt.Printf("dial %s ok\n", f[1])
		case f[0] == "echo" && len(f) == 2:
			if kept == nil {
				fmt.Println("echo err none")
				continue
			}
			kept.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := kept.Write([]byte(f[1] + "\n")); err != nil {
				fmt.Printf("echo err %s\n", errName(err))
				continue
			}
			line, err := keptR.ReadString('\n')
			if err != nil {
				fmt.Printf("echo err %s\n", errName(err))
				continue
			}
			fmt.Printf("echo ok %s\n", strings.TrimSpace(line))
		case f[0] == "status":
			fmt.Println("status")
		case f[0] == "exit":
			os.Exit(0)
		default:
			fmt.Printf("what %s\n", in.Text())
		}
	}
}

func main() {
	time.AfterFunc(120*time.Second, func() {
		fmt.Println("timeout")
		os.Exit(3)
	})
	if len(os.Args) == 2 && os.Args[1] == "serve" {
		serve()
	} else if len(os.Args) == 2 && os.Args[1] == "client" {
		client()
	} else {
		fmt.Fprintln(os.Stderr, "usage: goattach serve|client")
		os.Exit(2)
	}
}
