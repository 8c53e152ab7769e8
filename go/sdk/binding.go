package sdk

import (
	"errors"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Binding holds the well-known entries of a binding Secret, as the Service
// Binding spec (servicebinding.io) names them. Type is required; an empty
// field is left out. It is the Go twin of the TypeScript SDK's
// BindingEntries: BindingEntries checks it with the same rules and the same
// sentences (testdata/binding.json is run by both SDKs' tests).
type Binding struct {
	// Type is the abstract classification of the binding, e.g. postgresql, redis.
	Type string
	// Provider says who provides it, e.g. halkyon.
	Provider string
	// Host is a DNS-resolvable host name or an IP address.
	Host string
	// Port is a port number, 1 to 65535.
	Port string
	// URI is a URI (RFC 3986), e.g. redis://:password@host:6379/0.
	URI      string
	Username string
	Password string
	Database string
	// Certificates are PEM-encoded X.509 certificates: the chain to trust.
	Certificates string
	// PrivateKey is a PEM-encoded private key, for mTLS (the entry private-key).
	PrivateKey string
}

var (
	hostName  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)
	ipv6      = regexp.MustCompile(`^\[?[0-9A-Fa-f:.]+\]?$`)
	portText  = regexp.MustCompile(`^\d{1,5}$`)
	entryName = regexp.MustCompile(`^[a-z0-9\-.]{1,253}$`)
)

// CheckBindingEntries says what is wrong with a binding Secret's entries,
// each as a sentence; none when they meet the spec's requirements.
//
//	problems := sdk.CheckBindingEntries(map[string]string{"type": "redis", "port": "0"})
//	// ["port \"0\" is not a port number (1-65535)"]
func CheckBindingEntries(entries map[string]string) []string {
	problems := []string{}
	if entries["type"] == "" {
		problems = append(problems, "type is missing: a projected binding must say what it is (e.g. postgresql)")
	}
	if host, ok := entries["host"]; ok && !((len(host) <= 253 && hostName.MatchString(host)) || ipv6.MatchString(host)) {
		problems = append(problems, "host "+strconv.Quote(host)+" is neither a DNS name nor an IP address")
	}
	if port, ok := entries["port"]; ok {
		n, _ := strconv.Atoi(port)
		if !portText.MatchString(port) || n < 1 || n > 65535 {
			problems = append(problems, "port "+strconv.Quote(port)+" is not a port number (1-65535)")
		}
	}
	if uri, ok := entries["uri"]; ok {
		if u, err := url.Parse(uri); err != nil || u.Scheme == "" {
			problems = append(problems, "uri is not a valid URI")
		}
	}
	for _, pem := range []string{"certificates", "private-key"} {
		if value, ok := entries[pem]; ok && !strings.Contains(value, "-----BEGIN ") {
			problems = append(problems, pem+" is not PEM-encoded")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		if !entryName.MatchString(name) {
			problems = append(problems, "entry "+strconv.Quote(name)+" is not a file name the spec allows ([a-z0-9-.], up to 253)")
		}
	}
	return problems
}

// BindingEntries gives the well-known entries as a Secret's stringData, or
// an error naming each problem when they break the spec (a plugin bug).
//
//	entries, err := sdk.BindingEntries(sdk.Binding{
//		Type: "redis", Provider: "halkyon", Host: "sessions.shop.svc", Port: "6379",
//		Password: password, URI: "redis://:" + url.QueryEscape(password) + "@sessions.shop.svc:6379/0",
//	})
func BindingEntries(b Binding) (map[string]string, error) {
	data := map[string]string{}
	for key, value := range map[string]string{
		"type": b.Type, "provider": b.Provider, "host": b.Host, "port": b.Port, "uri": b.URI,
		"username": b.Username, "password": b.Password, "database": b.Database,
		"certificates": b.Certificates, "private-key": b.PrivateKey,
	} {
		if value != "" {
			data[key] = value
		}
	}
	return checkedEntries(data)
}

// checkedEntries is data when it meets the spec; else the error both SDKs word alike.
func checkedEntries(data map[string]string) (map[string]string, error) {
	if problems := CheckBindingEntries(data); len(problems) > 0 {
		return nil, errors.New("binding entries break the Service Binding spec: " + strings.Join(problems, "; "))
	}
	return data, nil
}
