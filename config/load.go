package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the configuration file and every *_file secret.
const MaxFileSize = 1 << 20

// Problem is one thing wrong with a configuration, at a line of its file.
type Problem struct {
	Line int    // 1-based line in the file; 0 when unknown
	Key  string // dotted key, such as "oidc.issuer"; empty for the file itself
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in one configuration file.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config: %s: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads, expands, validates and completes the configuration in path.
// On any problem it returns a *Error listing all of them and no Config.
func Load(path string) (*Config, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse is Load for data already in memory. lookupEnv resolves ${VAR}
// references (os.LookupEnv in production); name labels the errors.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parse(name, data, lookupEnv, readBounded)
}

func parse(name string, data []byte, lookupEnv func(string) (string, bool), readFile func(string) ([]byte, error)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	l := &loader{errs: &Error{File: name}, lines: map[string]int{}, lookupEnv: lookupEnv, readFile: readFile}
	cfg := l.parse(data)
	if len(l.errs.Problems) > 0 {
		sort.SliceStable(l.errs.Problems, func(i, j int) bool { return l.errs.Problems[i].Line < l.errs.Problems[j].Line })
		return nil, l.errs
	}
	return cfg, nil
}

type loader struct {
	errs      *Error
	lines     map[string]int // dotted key -> line of its value
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error) // for *_file secrets and ca_file
}

func (l *loader) add(key, format string, args ...any) {
	line := l.lineOf(key)
	l.errs.Problems = append(l.errs.Problems, Problem{Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// lineOf gives the line of key, or of its nearest parent that is present.
func (l *loader) lineOf(key string) int {
	for k := key; k != ""; {
		if n, ok := l.lines[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return l.lines[""]
}

func (l *loader) parse(data []byte) *Config {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.add("", "the file is empty")
		} else {
			l.add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		l.add("", "the file must hold one YAML document")
		return nil
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		l.lines[""] = doc.Line
		l.add("", "the top level must be a mapping of keys")
		return nil
	}
	root := doc.Content[0]
	l.lines[""] = root.Line
	// Keys the schema does not know are reported by walk and skipped by
	// Decode, so that the checks below still run: every problem at once.
	l.walk(root, reflect.TypeOf(Config{}), "")
	var cfg Config
	if err := root.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				l.errs.Problems = append(l.errs.Problems, typeProblem(m))
			}
		} else {
			l.add("", "%v", err)
		}
		return nil
	}
	l.readSecretFiles(&cfg)
	cfg.applyDefaults()
	l.validate(&cfg)
	return &cfg
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

func typeProblem(m string) Problem {
	if s := lineRE.FindStringSubmatch(m); s != nil {
		var n int
		fmt.Sscan(s[1], &n)
		return Problem{Line: n, Msg: s[2]}
	}
	return Problem{Msg: m}
}

// walk records the line of every key, refuses keys the schema does not
// have, and expands ${VAR} in every scalar value, in place.
func (l *loader) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.ScalarNode:
		l.expand(n, path)
		return
	case yaml.AliasNode:
		l.add(path, "aliases are not supported")
		return
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice {
			for i, c := range n.Content {
				l.lines[fmt.Sprintf("%s[%d]", path, i)] = c.Line
				l.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
		return
	case yaml.MappingNode:
	default:
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		child := key
		if path != "" {
			child = path + "." + key
		}
		l.lines[child] = k.Line
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByTag(t, key)
			if !ok {
				l.add(child, "unknown key")
				continue
			}
			l.walk(v, f.Type, child)
		case reflect.Map:
			l.walk(v, t.Elem(), child)
		default:
			l.add(path, "expected a single value, not a mapping")
			return
		}
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

var envRE = regexp.MustCompile(`\$\{([^}]*)\}`)
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces ${NAME} with the environment variable NAME. A reference
// to an unset variable is an error, not an empty string.
func (l *loader) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	n.Value = envRE.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := ref[2 : len(ref)-1]
		if !envNameRE.MatchString(name) {
			l.add(path, "%q is not a valid environment variable reference", ref)
			return ""
		}
		v, ok := l.lookupEnv(name)
		if !ok {
			l.add(path, "environment variable %s is not set", name)
			return ""
		}
		return v
	})
	// An expanded value is a string, whatever it looks like: a secret of
	// "null" or "0x1" must not change type.
	n.Tag = "!!str"
}

// readSecretFiles fills each secret from its *_file key.
func (l *loader) readSecretFiles(c *Config) {
	l.secretFile("oidc.client_secret", &c.OIDC.ClientSecret, c.OIDC.ClientSecretFile)
	l.secretFile("session.redis.password", &c.Session.Redis.Password, c.Session.Redis.PasswordFile)
	if f := c.Memos.AdminTokenFile; f != "" && !missingFile(f) {
		l.secretFile("memos.admin_token", &c.Memos.AdminToken, f)
	}
	for i := range c.Routes {
		m := &c.Routes[i].Memos
		if f := m.AdminTokenFile; f != "" && !missingFile(f) {
			l.secretFile(fmt.Sprintf("routes[%d].memos.admin_token", i), &m.AdminToken, f)
		}
	}
	if len(c.Session.SecretFile) > 0 && len(c.Session.Secret) > 0 {
		l.add("session.secret_file", "set either session.secret or session.secret_file, not both")
		return
	}
	for _, f := range c.Session.SecretFile {
		var v string
		if l.secretFile("session.secret", &v, f) {
			c.Session.Secret = append(c.Session.Secret, v)
		}
	}
}

// secretFile reads the secret for key from file into value, and reports
// whether it did.
func (l *loader) secretFile(key string, value *string, file string) bool {
	if file == "" {
		return false
	}
	if *value != "" {
		l.add(key+"_file", "set either %s or %s_file, not both", key, key)
		return false
	}
	data, err := l.readFile(file)
	if err != nil {
		l.add(key+"_file", "%v", err)
		return false
	}
	*value = strings.TrimRight(string(data), "\r\n")
	if *value == "" {
		l.add(key+"_file", "%s is empty", file)
		return false
	}
	return true
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// missingFile reports whether path does not exist while its directory
// does: a file the proxy will create (Memos's first run).
func missingFile(path string) bool {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	fi, err := os.Stat(filepath.Dir(path))
	return err == nil && fi.IsDir()
}
