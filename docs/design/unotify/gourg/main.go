// SIGURG storm: busy goroutines get preempted asynchronously (SIGURG) while
// the main goroutine connects 2000 times to a loopback listener.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var urg atomic.Int64
	c := make(chan os.Signal, 1024)
	signal.Notify(c, syscall.SIGURG)
	go func() { for range c { urg.Add(1) } }()
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() { x := 0; for { select { case <-stop: return; default: }; for j := 0; j < 1e6; j++ { x += j } } }()
	}
	addr := os.Args[1]
	t0 := time.Now()
	ok, fail := 0, 0
	for i := 0; i < 2000; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil { fail++; continue }
		ok++
		conn.Close()
	}
	close(stop)
	fmt.Printf("go: %d connected, %d failed in %v; SIGURG seen by signal.Notify: %d\n", ok, fail, time.Since(t0), urg.Load())
}
