package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// What the Redis store does so that a Sentinel failover loses nothing.
//
// Redis replicates asynchronously, and a Sentinel failover leaves a window
// in which the old master still takes writes that will be thrown away when
// Sentinel turns it into a replica of the new one (measured: about 10 s
// after a planned SENTINEL FAILOVER). A write the proxy must not lose (a
// session written at sign-in, a rotated refresh token, a sign-out, the
// refresh lock) therefore counts as done only when it is confirmed:
//
//   - a replica has it (WAIT 1 answers 1 within confirmWait): it is on the
//     server Sentinel would promote, so it survives the next failover; or
//   - the server that took it has no replica in sync and is the master
//     the sentinels name now (same replication id as the named master; a
//     promoted replica gets a new one), none of them in the middle of a
//     failover: nothing more can be had while the master has no replica,
//     for example after the old master was killed, and refusing every
//     write until it comes back would be an outage of its own.
//
// Anything else (the write went to a demoted master, or its outcome is
// unknown) is ErrUnconfirmed: the caller retries it, on the new master.
// With a single server or a cluster there is no Sentinel to ask, and a
// write is done when Redis says so, as before.

// ErrUnconfirmed is a write Redis took but that may not survive a
// failover (it reached a master the sentinels no longer name, or no
// replica confirmed it in time and the master could not be checked). It
// wraps ErrStoreDown: the caller retries it.
var ErrUnconfirmed = fmt.Errorf("%w: the write was not confirmed to survive a failover", ErrStoreDown)

// confirmWait is how long a write waits for a replica's acknowledgement
// before the master is checked instead. A replica on a healthy network
// acknowledges within a millisecond.
const confirmWait = 100 * time.Millisecond

// sentinels asks the Sentinel group which server is the master, and
// follows its announcements of a new one.
type sentinels struct {
	master  string // the master's name
	addrs   []string
	opts    redis.Options // for the sentinels (address set per use)
	server  redis.Options // for the data servers (address set per use)
	mu      sync.Mutex
	clients map[string]*redis.Client // data servers by address, for the role check
}

func newSentinels(o RedisOptions, timeout time.Duration) *sentinels {
	base := redis.Options{
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		MaxRetries: 0, DisableIdentity: true, Protocol: 2, PoolSize: 2,
		TLSConfig: cloneTLS(o.TLS),
	}
	server := base
	server.Username, server.Password, server.DB = o.Username, o.Password, o.DB
	return &sentinels{master: o.MasterName, addrs: o.Addresses, opts: base, server: server, clients: map[string]*redis.Client{}}
}

func cloneTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	return c.Clone()
}

// masterReplID is the replication id of the server the sentinels name as
// master now. It asks every sentinel at once: more than half of them must
// answer, all that answer must name the same server, and none may be in
// the middle of a failover (only the sentinel that runs a failover knows,
// and until it announces the new master it still names the old one,
// which has already lost its replica).
func (g *sentinels) masterReplID(ctx context.Context) (string, error) {
	type answer struct {
		addr string
		err  error
	}
	answers := make(chan answer, len(g.addrs))
	for _, a := range g.addrs {
		go func() {
			o := g.opts
			o.Addr = a
			sc := redis.NewSentinelClient(&o)
			defer sc.Close()
			m, err := sc.Master(ctx, g.master).Result()
			switch {
			case err != nil:
			case strings.Contains(m["flags"], "failover_in_progress"):
				err = errors.New("a failover is in progress")
			case m["ip"] == "" || m["port"] == "":
				err = errors.New("no master address")
			}
			answers <- answer{net.JoinHostPort(m["ip"], m["port"]), err}
		}()
	}
	addr, agreed, last := "", 0, error(nil)
	for range g.addrs {
		a := <-answers
		switch {
		case a.err != nil && a.err.Error() == "a failover is in progress":
			return "", fmt.Errorf("%w: a sentinel is failing the master over", ErrStoreDown)
		case a.err != nil:
			last = a.err
		case addr != "" && a.addr != addr:
			return "", fmt.Errorf("%w: the sentinels name different masters", ErrStoreDown)
		default:
			addr = a.addr
			agreed++
		}
	}
	if agreed*2 <= len(g.addrs) {
		return "", fmt.Errorf("%w: too few sentinels named the master: %v", ErrStoreDown, last)
	}
	g.mu.Lock()
	c, ok := g.clients[addr]
	if !ok {
		if len(g.clients) > 8 { // masters come and go: keep a few
			for a, old := range g.clients {
				old.Close()
				delete(g.clients, a)
			}
		}
		o := g.server
		o.Addr = addr
		c = redis.NewClient(&o)
		g.clients[addr] = c
	}
	g.mu.Unlock()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", down(err)
	}
	role, id, _ := replication(info)
	if role != "master" {
		return "", fmt.Errorf("%w: the server the sentinels name (%s) is a %s", ErrStoreDown, addr, role)
	}
	return id, nil
}

// replication reads role, master_replid and the number of replicas in
// sync (state=online) from INFO replication.
func replication(info string) (role, replID string, online int) {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "role":
			role = v
		case k == "master_replid":
			replID = v
		case strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online"):
			online++
		}
	}
	return role, replID, online
}

// follow calls moved with the master's address whenever the sentinels
// announce a new one (+switch-master), and once at each (re)connection to
// a sentinel with the address it names then, so that a switch missed while
// no sentinel was reachable is seen too. It returns when ctx ends.
func (g *sentinels) follow(ctx context.Context, moved func(addr string)) {
	for i := 0; ctx.Err() == nil; i++ {
		o := g.opts
		o.Addr = g.addrs[i%len(g.addrs)]
		o.ReadTimeout = -1 // a subscription waits as long as it takes
		sc := redis.NewSentinelClient(&o)
		ps := sc.Subscribe(ctx, "+switch-master")
		for ctx.Err() == nil {
			msg, err := ps.ReceiveTimeout(ctx, 15*time.Second)
			if err != nil {
				var ne interface{ Timeout() bool }
				if errors.As(err, &ne) && ne.Timeout() && ps.Ping(ctx) == nil {
					continue
				}
				break
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if addr, err := sc.GetMasterAddrByName(ctx, g.master).Result(); err == nil && len(addr) == 2 {
					moved(net.JoinHostPort(addr[0], addr[1]))
				}
			case *redis.Message:
				// "<name> <old-ip> <old-port> <new-ip> <new-port>"
				f := strings.Fields(m.Payload)
				if len(f) == 5 && f[0] == g.master {
					moved(net.JoinHostPort(f[3], f[4]))
				}
			}
		}
		ps.Close()
		sc.Close()
		sleep(ctx, 200*time.Millisecond)
	}
}

func (g *sentinels) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for a, c := range g.clients {
		c.Close()
		delete(g.clients, a)
	}
}

// confirmed runs cmds as one pipeline on one connection and returns once
// what they wrote is confirmed (see the top of this file), ErrUnconfirmed
// when it is not, or ErrStoreDown when Redis failed. Without Sentinel it
// is a plain pipeline.
func (s *redisDB) confirmed(ctx context.Context, cmds func(p redis.Pipeliner)) error {
	if s.sent == nil {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { cmds(p); return nil })
		return down(err)
	}
	c, ok := s.rdb.(*redis.Client)
	if !ok {
		return errors.New("session: redis: Sentinel without a failover client")
	}
	cn := c.Conn()
	defer cn.Close()
	var info *redis.StringCmd
	var acks *redis.Cmd
	cmds2, _ := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds(p)
		info = p.Info(ctx, "replication")
		acks = p.Do(ctx, "WAIT", 1, confirmWait.Milliseconds())
		return nil
	})
	for _, c := range cmds2 {
		if c == info || c == acks {
			continue
		}
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return down(err)
		}
	}
	if n, err := acks.Int64(); err == nil && n >= 1 {
		return nil // a replica has it
	}
	if err := info.Err(); err != nil {
		// An ACL user without +info: the master cannot be checked.
		return fmt.Errorf("%w: no replica confirmed it and INFO failed (the Redis user needs +info with Sentinel): %w", ErrUnconfirmed, err)
	}
	role, id, online := replication(info.Val())
	switch {
	case role != "master" || id == "":
		return ErrUnconfirmed
	case online > 0:
		// A replica in sync has not acknowledged yet (a busy replica, a
		// slow network): wait for it a while longer on the same
		// connection, whose last write WAIT counts from.
		wait := 5 * confirmWait
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d)/2)
		}
		if n, err := cn.Do(ctx, "WAIT", 1, max(wait.Milliseconds(), 1)).Int64(); err == nil && n >= 1 {
			return nil
		}
		return fmt.Errorf("%w: no replica acknowledged it within %v", ErrUnconfirmed, confirmWait+wait)
	}
	named, err := s.sent.masterReplID(ctx)
	if err != nil {
		return fmt.Errorf("%w (%w)", ErrUnconfirmed, err)
	}
	if named != id {
		s.event("unconfirmed", "demoted_master")
		return fmt.Errorf("%w: it reached a master the sentinels no longer name", ErrUnconfirmed)
	}
	return nil // the master, which has no replica to confirm it right now
}
