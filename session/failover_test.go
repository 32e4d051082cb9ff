package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisProc starts a redis-server (or, with a config file, a sentinel)
// on a free loopback port until the test ends.
func redisProc(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is needed")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append(args, "--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", t.TempDir(), "--repl-diskless-sync-delay", "0")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	waitFor(t, "redis-server did not start", func() bool { return c.Ping(context.Background()).Err() == nil })
	return addr
}

func waitFor(t *testing.T, msg string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
	}
}

// TestConfirmRefusesDemotedMaster: after a planned failover the old
// master still takes writes for about 10 s, until Sentinel makes it a
// replica and throws them away. A session written there is not
// confirmed (it would be lost); the same write on the new master is, even
// though that master has no replica yet; and on a healthy pair the
// replica's acknowledgement confirms it.
func TestConfirmRefusesDemotedMaster(t *testing.T) {
	ctx := context.Background()
	m := redisProc(t)
	_, mport, _ := net.SplitHostPort(m)
	r := redisProc(t, "--replicaof", "127.0.0.1", mport)
	var sentinels []string
	for range 3 {
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor s 127.0.0.1 %s 2\nsentinel down-after-milliseconds s 1000\n", mport)), 0o600)
		sentinels = append(sentinels, redisProc(t, conf, "--sentinel"))
	}
	master := redis.NewClient(&redis.Options{Addr: m})
	replica := redis.NewClient(&redis.Options{Addr: r})
	sen := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0]})
	defer master.Close()
	defer replica.Close()
	defer sen.Close()
	waitFor(t, "the replica did not sync", func() bool {
		info, _ := replica.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	waitFor(t, "the sentinels do not see the replica", func() bool {
		for _, a := range sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: a})
			reps, err := c.Replicas(ctx, "s").Result()
			c.Close()
			if err != nil || len(reps) != 1 || reps[0]["flags"] != "slave" {
				return false
			}
		}
		return true
	})

	// db writes through a client pinned to addr, and checks with the
	// sentinels.
	db := func(addr string) *redisDB {
		d, err := newRedisDB(RedisOptions{Addresses: sentinels, MasterName: "s", Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d.rdb.Close()
		d.rdb = redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { d.Close() })
		return d
	}
	tk, _ := NewTicket()
	sess := &Session{Subject: "alice", Created: time.Now().Unix(), Expires: time.Now().Add(time.Hour).Unix()}
	if err := db(m).Put(ctx, tk, sess, time.Hour, false); err != nil {
		t.Fatalf("a write the replica acknowledged: %v", err)
	}

	if n := replica.Exists(ctx, "oidc-proxy:s:"+tk.Name()).Val(); n != 1 {
		t.Fatal("the write confirmed by the replica is not on the replica")
	}
	if err := sen.Failover(ctx, "s").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no new master", func() bool {
		addr, err := sen.GetMasterAddrByName(ctx, "s").Result()
		return err == nil && addr[1] != mport
	})
	if info, _ := master.Info(ctx, "replication").Result(); !strings.Contains(info, "role:master") {
		t.Skip("Sentinel turned the old master into a replica already; the window is gone")
	}
	err := db(m).Put(ctx, tk, sess, time.Hour, true)
	if !errors.Is(err, ErrUnconfirmed) || !errors.Is(err, ErrStoreDown) {
		t.Errorf("a write on the demoted master: %v, want ErrUnconfirmed", err)
	}
	// Until every sentinel has heard of the new master (their gossip takes
	// up to about 2 s), no write is confirmed without a replica.
	waitFor(t, "the sentinels do not agree on the new master", func() bool {
		for _, a := range sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: a})
			addr, err := c.GetMasterAddrByName(ctx, "s").Result()
			c.Close()
			if err != nil || net.JoinHostPort(addr[0], addr[1]) != r {
				return false
			}
		}
		return true
	})
	if err := db(r).Put(ctx, tk, sess, time.Hour, true); err != nil {
		t.Errorf("the same write on the new master, which has no replica yet: %v", err)
	}
}
