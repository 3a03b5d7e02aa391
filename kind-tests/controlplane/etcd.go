package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// runEtcd runs a single-member embedded etcd until SIGTERM/SIGINT, then
// closes it cleanly and returns 0. It returns non-zero if etcd fails to
// start or stops on its own.
func runEtcd(args []string) int {
	fs := flag.NewFlagSet("controlplane etcd", flag.ContinueOnError)
	name := fs.String("name", "default", "human-readable name for this member")
	dataDir := fs.String("data-dir", "", "path to the data directory (required)")
	listenClient := fs.String("listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to listen on for client traffic")
	advertiseClient := fs.String("advertise-client-urls", "", "comma-separated client URLs to advertise (default: --listen-client-urls)")
	listenPeer := fs.String("listen-peer-urls", "http://127.0.0.1:2380", "comma-separated URLs to listen on for peer traffic")
	advertisePeer := fs.String("initial-advertise-peer-urls", "", "comma-separated peer URLs to advertise (default: --listen-peer-urls)")
	quota := fs.Int64("quota-backend-bytes", 0, "backend size quota in bytes (0 = etcd default)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error, panic or fatal")
	noFsync := fs.Bool("unsafe-no-fsync", false, "disable fsync (faster, unsafe on crash; fine for throwaway test clusters)")
	readyTimeout := fs.Duration("ready-timeout", 60*time.Second, "how long to wait for the server to become ready before giving up")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "controlplane etcd: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "controlplane etcd: --data-dir is required")
		return 2
	}
	if *advertiseClient == "" {
		*advertiseClient = *listenClient
	}
	if *advertisePeer == "" {
		*advertisePeer = *listenPeer
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.Logger = "zap"
	cfg.LogLevel = *logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = *noFsync
	// embed.NewConfig leaves this at 0 (only etcd's own flag parsing sets the
	// 300ms default), which makes etcd log every request as "expensive" at warn.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	if *quota > 0 {
		cfg.QuotaBackendBytes = *quota
	}
	var err error
	for _, f := range []struct {
		flag string
		val  string
		dst  *[]url.URL
	}{
		{"listen-client-urls", *listenClient, &cfg.ListenClientUrls},
		{"advertise-client-urls", *advertiseClient, &cfg.AdvertiseClientUrls},
		{"listen-peer-urls", *listenPeer, &cfg.ListenPeerUrls},
		{"initial-advertise-peer-urls", *advertisePeer, &cfg.AdvertisePeerUrls},
	} {
		if *f.dst, err = parseURLs(f.val); err != nil {
			fmt.Fprintf(os.Stderr, "controlplane etcd: --%s: %v\n", f.flag, err)
			return 2
		}
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	// Register before starting so that a signal during startup is not lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane etcd: start: %v\n", err)
		return 1
	}
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "controlplane etcd: ready, serving clients on %s\n", *advertiseClient)
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "controlplane etcd: failed during startup: %v\n", err)
		e.Close()
		return 1
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "controlplane etcd: received %v during startup, shutting down\n", s)
		e.Close()
		return 0
	case <-time.After(*readyTimeout):
		fmt.Fprintf(os.Stderr, "controlplane etcd: not ready after %v, giving up\n", *readyTimeout)
		e.Server.Stop()
		e.Close()
		return 1
	}

	select {
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "controlplane etcd: received %v, shutting down\n", s)
		e.Close()
		fmt.Fprintln(os.Stderr, "controlplane etcd: stopped")
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "controlplane etcd: server error: %v\n", err)
		e.Close()
		return 1
	case <-e.Server.StopNotify():
		fmt.Fprintln(os.Stderr, "controlplane etcd: server stopped unexpectedly")
		e.Close()
		return 1
	}
}

func parseURLs(s string) ([]url.URL, error) {
	var out []url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			return nil, err
		}
		if u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("%q is not a URL like http://127.0.0.1:2379", part)
		}
		out = append(out, *u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no URL given")
	}
	return out, nil
}
