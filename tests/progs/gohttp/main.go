// gohttp: an HTTP server and client in one statically linked binary
// (built with CGO_ENABLED=0 by the tests). The server listens on
// 127.0.0.1:0; the client makes N concurrent GET requests to it while busy
// goroutines force the runtime to preempt with SIGURG. With -url it only
// fetches that URL and prints the body. Output is deterministic.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func fetch(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func main() {
	n := flag.Int("n", 50, "requests")
	url := flag.String("url", "", "only fetch this URL")
	flag.Parse()
	if *url != "" {
		body, err := fetch(*url)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Print(body)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	var served int64
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(&served, 1)
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	stop := make(chan struct{})
	for i := 0; i < 2; i++ { // busy loops: async preemption sends SIGURG
		go func() {
			x := 0
			for {
				select {
				case <-stop:
					return
				default:
					for j := 0; j < 1e6; j++ {
						x += j
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	var ok int64
	base := "http://" + ln.Addr().String()
	for i := 0; i < *n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			want := fmt.Sprintf("hello /r%d", i)
			if body, err := fetch(fmt.Sprintf("%s/r%d", base, i)); err == nil && body == want {
				atomic.AddInt64(&ok, 1)
			} else {
				fmt.Println("request", i, "failed:", err, body)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	time.Sleep(10 * time.Millisecond)
	fmt.Printf("gomaxprocs=%d ok=%d served=%d\n", runtime.GOMAXPROCS(0), ok, atomic.LoadInt64(&served))
}
