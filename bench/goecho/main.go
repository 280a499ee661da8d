// Command goecho is the Go baseline of bench/suite: a plain net/http server
// that answers every request with 200 and the body "hello", as the
// benchmark's hello-world handler does. The suite builds it and runs it as a
// process of its own, like the node baseline.
//
//	goecho PORT   (listens on 127.0.0.1:PORT)
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goecho PORT")
		os.Exit(2)
	}
	hello := []byte("hello")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(hello)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], h); err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
}
