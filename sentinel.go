package redisadapter

import (
	"crypto/tls"
	"fmt"

	"github.com/redis/rueidis"
)

var _ Connector = Sentinel{}

// Sentinel connects to the master of a Redis Sentinel deployment and
// follows it through failovers: after +switch-master, publishes and
// subscriptions move to the new master without any call from the user.
type Sentinel struct {
	// MasterName is the name the sentinels monitor, e.g. "mymaster". required
	MasterName string
	// Addrs are the sentinels' host:port addresses. required
	Addrs []string
	// Username is the ACL user on the data nodes (master and replicas). default: none
	Username string
	// Password is the password on the data nodes. default: none
	Password string
	// SentinelUsername is the ACL user on the sentinels. default: none
	SentinelUsername string
	// SentinelPassword is the password on the sentinels. default: none
	SentinelPassword string
	// DB is the database number on the data nodes. default: 0
	DB int
	// TLSConfig, when set, is used for the data nodes and the sentinels. default: nil (no TLS)
	TLSConfig *tls.Config
}

func (Sentinel) protocol(key, uid string) protocol { return classic{key, uid} }

func (s Sentinel) clientOption() (rueidis.ClientOption, error) {
	if s.MasterName == "" || len(s.Addrs) == 0 {
		return rueidis.ClientOption{}, fmt.Errorf("%w: Sentinel needs MasterName and at least one sentinel address", ErrConfig)
	}
	return rueidis.ClientOption{
		InitAddress: s.Addrs,
		Username:    s.Username,
		Password:    s.Password,
		SelectDB:    s.DB,
		TLSConfig:   s.TLSConfig,
		Sentinel: rueidis.SentinelOption{
			MasterSet: s.MasterName,
			Username:  s.SentinelUsername,
			Password:  s.SentinelPassword,
			TLSConfig: s.TLSConfig,
		},
	}, nil
}
