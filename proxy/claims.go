package proxy

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// maxClaimValue bounds one flattened claim.
const maxClaimValue = 16 << 10

// flattenClaim turns a JSON claim into a header value. The rules, as the
// README documents them:
//
//   - a string is used as it is;
//   - a number or boolean is written as JSON writes it;
//   - a list of strings, numbers or booleans is joined with ",";
//   - null, an object, a list holding a list or object, or an empty list
//     gives no value: the header is not set;
//   - a value holding a control character (CR, LF, NUL, tab, DEL...) or
//     invalid UTF-8, or longer than 16 KiB, gives no value, so a claim can
//     never split or add a header.
//
// ok is false when the claim was present but refused by these rules.
func flattenClaim(raw json.RawMessage) (value string, ok bool) {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", false
	}
	switch t := v.(type) {
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := scalar(e)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		if len(parts) == 0 {
			return "", true
		}
		value = strings.Join(parts, ",")
	default:
		s, ok := scalar(t)
		if !ok {
			return "", false
		}
		value = s
	}
	if !safeHeaderValue(value) {
		return "", false
	}
	return value, true
}

func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		if t {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

func safeHeaderValue(s string) bool {
	if len(s) > maxClaimValue || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
