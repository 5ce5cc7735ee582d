// chaoscsi is a CSI driver for tests: volumes are image files on this machine (ext4 on a
// loop device, or a raw loop device), and every CSI call and every filesystem operation on a
// volume can be made to fail, hang, slow down or corrupt data at runtime, through a small
// control interface. It exists so that volprobe's tests can produce each failure it
// classifies through the real kubelet and sidecars. It is a test tool: never ship it.
// See docs/chaos-csi.md.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

func main() {
	name := flag.String("driver-name", "chaos.csi.volprobe.io", "CSI driver name")
	nodeID := flag.String("node-id", "", "name of the node this driver serves (required)")
	endpoint := flag.String("csi-socket", "", "unix socket for CSI (required)")
	registry := flag.String("registration-dir", "", "the kubelet's plugins_registry directory (empty: do not register)")
	control := flag.String("control-socket", "", "unix socket for the control interface (required)")
	stateDir := flag.String("state-dir", "", "directory for backing images and private mounts (required)")
	flag.Parse()
	if *nodeID == "" || *endpoint == "" || *control == "" || *stateDir == "" {
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	driver, err := NewDriver(*name, *nodeID, *stateDir, &Faults{})
	if err != nil {
		log.Fatalf("state: %v", err)
	}
	driver.cleanStale()

	if err := os.MkdirAll(filepath.Dir(*endpoint), 0o750); err != nil {
		log.Fatal(err)
	}
	_ = os.Remove(*endpoint)
	listener, err := net.Listen("unix", *endpoint)
	if err != nil {
		log.Fatalf("listen %s: %v", *endpoint, err)
	}
	server := grpc.NewServer(grpc.UnaryInterceptor(driver.intercept))
	csi.RegisterIdentityServer(server, driver)
	csi.RegisterControllerServer(server, driver)
	csi.RegisterNodeServer(server, driver)
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Printf("CSI server: %v", err)
		}
	}()

	controlServer, err := serveControl(driver, *control)
	if err != nil {
		log.Fatalf("control socket: %v", err)
	}
	var registrationServer *grpc.Server
	var registrationSocket string
	if *registry != "" {
		if err := os.MkdirAll(*registry, 0o750); err != nil {
			log.Fatal(err)
		}
		registrationSocket = filepath.Join(*registry, *name+"-reg.sock")
		registrationServer, err = serveRegistration(driver, registrationSocket, *endpoint)
		if err != nil {
			log.Fatalf("registration socket: %v", err)
		}
	}
	log.Printf("chaoscsi %s serving %s for node %s (control: %s)", version, *endpoint, *nodeID, *control)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	received := <-signals
	log.Printf("%s: shutting down", received)

	// Deregister first (the kubelet sees the socket go), stop serving (which cancels the
	// calls held by faults), then release data-path faults and undo every mount.
	if registrationServer != nil {
		registrationServer.Stop()
		_ = os.Remove(registrationSocket)
	}
	server.Stop()
	finished := make(chan struct{})
	go func() { driver.inflight.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		log.Printf("some CSI calls are still running; cleaning up anyway")
	}
	driver.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = controlServer.Shutdown(ctx)
	_ = os.Remove(*endpoint)
	_ = os.Remove(*control)
	log.Printf("stopped")
}
