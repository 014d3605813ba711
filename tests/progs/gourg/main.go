// gourg: TCP connects under a SIGURG storm (issue 14), built with
// CGO_ENABLED=0 by the tests. A busy goroutine makes the runtime preempt with
// SIGURG, and a goroutine sends SIGURG to each of the process's threads
// every 100 µs on top (a signal then often lands in the middle of a connect).
// Meanwhile the main goroutine dials -allowed N times and, every -every
// dials, -denied once; each connection is closed at once.
//
// Prints two lines:
//
//	ok=A refused=R denied_ok=D other=O
//	sigurg_sent=S sigurg_seen=T elapsed=E [first_error=...]
//
// ok counts allowed dials that connected, refused denied dials refused with
// ECONNREFUSED, denied_ok denied dials that connected, other any other
// outcome. Exits 0, or 3 after 50 s.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	allowed := flag.String("allowed", "", "address to dial n times")
	denied := flag.String("denied", "", "address to dial every -every dials")
	n := flag.Int("n", 2000, "dials of -allowed")
	every := flag.Int("every", 10, "one dial of -denied per this many")
	flag.Parse()
	time.AfterFunc(50*time.Second, func() {
		fmt.Println("timeout")
		os.Exit(3)
	})

	var seen, sent atomic.Int64
	c := make(chan os.Signal, 1024)
	signal.Notify(c, syscall.SIGURG)
	go func() {
		for range c {
			seen.Add(1)
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 1; i++ { // a busy loop: async preemption sends SIGURG
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				for j := 0; j < 1e6; j++ {
					x += j
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the storm: SIGURG to every thread, the dialling one included
		defer wg.Done()
		pid := os.Getpid()
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				tasks, _ := os.ReadDir("/proc/self/task")
				for _, task := range tasks {
					tid, err := strconv.Atoi(task.Name())
					if err == nil && syscall.Tgkill(pid, tid, syscall.SIGURG) == nil {
						sent.Add(1)
					}
				}
			}
		}
	}()

	t0 := time.Now()
	ok, refused, deniedOK, other := 0, 0, 0, 0
	firstErr := ""
	note := func(err error) {
		other++
		if firstErr == "" {
			firstErr = err.Error()
		}
	}
	for i := 0; i < *n; i++ {
		if conn, err := net.Dial("tcp", *allowed); err != nil {
			note(err)
		} else {
			ok++
			conn.Close()
		}
		if *every > 0 && i%*every == 0 && *denied != "" {
			conn, err := net.Dial("tcp", *denied)
			switch {
			case err == nil:
				deniedOK++
				conn.Close()
			case errors.Is(err, syscall.ECONNREFUSED):
				refused++
			default:
				note(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	fmt.Printf("ok=%d refused=%d denied_ok=%d other=%d\n", ok, refused, deniedOK, other)
	fmt.Printf("sigurg_sent=%d sigurg_seen=%d elapsed=%v", sent.Load(), seen.Load(), time.Since(t0))
	if firstErr != "" {
		fmt.Printf(" first_error=%q", firstErr)
	}
	fmt.Println()
}
