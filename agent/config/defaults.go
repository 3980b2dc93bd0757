package config

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Per-service defaults.
const (
	DefaultBalance         = "roundrobin"
	DefaultDrainingTimeout = 30 * time.Second
	// MaxSlots bounds the server slots of one backend.
	MaxSlots = 65536
)

// SetDefaults fills every setting the file left empty that has a default: the security and
// lease settings, the store section and each service (listener protocol and member port,
// balance, draining timeout, health check). It is the one place defaults are filled, it may be
// called more than once, and it never touches data that an earlier Config shares: services
// are copied before they are filled.
func (c *Config) SetDefaults() {
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.AuthFailBurst == 0 {
		c.AuthFailBurst = DefaultAuthFailBurst
	}
	if c.AuthFailRefill == 0 {
		c.AuthFailRefill = DefaultAuthFailRefill
	}
	if c.MaxMembers == 0 {
		c.MaxMembers = DefaultMaxMembers
	}
	if c.LeaseMinTTL == 0 {
		c.LeaseMinTTL = DefaultLeaseMinTTL
	}
	if c.LeaseCheckInterval == 0 {
		c.LeaseCheckInterval = DefaultLeaseCheckInterval
	}
	c.Store.SetDefaults()
	c.setGroupDefaults()
	c.HaproxyMetricsListen = metricsListenDefault(c.HaproxyMetricsListen)
	if c.Services != nil {
		services := make(map[string]Service, len(c.Services))
		for _, name := range slices.Sorted(maps.Keys(c.Services)) {
			svc := c.Services[name]
			svc.SetDefaults()
			services[name] = svc
		}
		c.Services = services
	}
}

// SetDefaults fills the service's defaults on a copy of its listeners and health check.
func (s *Service) SetDefaults() {
	s.Listeners = slices.Clone(s.Listeners)
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if l.Protocol == "" {
			l.Protocol = "http"
		}
		if l.MemberPort == 0 {
			l.MemberPort = l.Port
		}
	}
	if s.Balance == "" {
		s.Balance = DefaultBalance
	}
	if s.DrainingTimeout == 0 {
		s.DrainingTimeout = DefaultDrainingTimeout
	}
	hc := HealthCheck{}
	if s.HealthCheck != nil {
		hc = *s.HealthCheck
	}
	hc.SetDefaults()
	s.HealthCheck = &hc
}

// SetDefaults fills ELB's defaults: interval 30s, timeout 5s, healthy 3, unhealthy 5 (ELB's own
// default unhealthy threshold is 2; 5 is less twitchy and within ELB's range).
func (h *HealthCheck) SetDefaults() {
	if h.Interval == 0 {
		h.Interval = 30 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = 5 * time.Second
	}
	if h.HealthyThreshold == 0 {
		h.HealthyThreshold = 3
	}
	if h.UnhealthyThreshold == 0 {
		h.UnhealthyThreshold = 5
	}
}

// SetDefaults fills the store section: type local; for etcd the prefix and dial timeout.
func (s *StoreConfig) SetDefaults() {
	if s.Type == "" {
		s.Type = StoreLocal
	}
	if s.Type != StoreEtcd {
		return
	}
	if s.Prefix == "" {
		s.Prefix = defaultStorePrefix
	}
	if s.DialTimeout == 0 {
		s.DialTimeout = 2 * time.Second
	}
}

// metricsListenDefault puts haproxy_metrics_listen without a host (":9101", "9101") on the
// loopback address, and writes an IP address as haproxy wants it ([::1]:9101). A value it
// cannot read is left for Validate to refuse.
func metricsListenDefault(v string) string {
	if v == "" {
		return ""
	}
	if _, err := strconv.Atoi(v); err == nil {
		v = ":" + v
	}
	if strings.HasPrefix(v, ":") {
		v = "127.0.0.1" + v
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.String()
	}
	return v
}
