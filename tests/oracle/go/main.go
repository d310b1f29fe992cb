// Command spacegate-oracle answers questions about image references and pull-secret matching
// with the upstream Go code itself, so the Python port in policy/ can be compared field by field.
//
// Protocol: one JSON object per line on stdin, one JSON object per line on stdout, in order.
//
//	{"op":"parse","input":S}
//	    reference.ParseNormalizedNamed(S), as the kubelet calls it (pkg/util/parsers).
//	    -> {"ok":true,"error":null,"domain","path","name","string","familiar","familiar_name",
//	        "tag":null|T,"digest":null|D}  or  {"ok":false,"error":MESSAGE}
//	{"op":"keyring","keys":[K...],"image":I}
//	    The kubelet's pull: parsers.ParseImageName(I), then BasicDockerKeyring.Lookup(name) on a
//	    keyring holding one DockerConfig whose entry for each K has Username K.
//	    -> {"ok":true,"name":N,"found":B,"users":[K...]}  or  {"ok":false,"error":MESSAGE}
//	{"op":"lookup","keys":[K...],"name":N}
//	    BasicDockerKeyring.Lookup(N) on the same keyring, N used as given.
//	    -> {"found":B,"users":[K...]}
//	{"op":"urls_match","glob":G,"target":T}
//	    credentialprovider.URLsMatchStr(G, T) -> {"match":B,"error":null|MESSAGE}
//
// Anything else gets {"protocol_error":MESSAGE}. Output is flushed whenever no further input
// is buffered, so a client may send one request at a time or stream thousands.
package main

import (
	"bufio"
	// The kubelet registers both (k8s.io/kubernetes/pkg/util/parsers); go-digest only accepts
	// the algorithms whose hash is linked in. crypto/sha512 also registers SHA-384.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/distribution/reference"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type request struct {
	Op     string   `json:"op"`
	Input  string   `json:"input"`
	Keys   []string `json:"keys"`
	Image  string   `json:"image"`
	Name   string   `json:"name"`
	Glob   string   `json:"glob"`
	Target string   `json:"target"`
}

type object = map[string]any

func parse(s string) object {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return object{"ok": false, "error": err.Error()}
	}
	out := object{
		"ok":            true,
		"error":         nil,
		"domain":        reference.Domain(named),
		"path":          reference.Path(named),
		"name":          named.Name(),
		"string":        named.String(),
		"familiar":      reference.FamiliarString(named),
		"familiar_name": reference.FamiliarName(named),
		"tag":           nil,
		"digest":        nil,
	}
	if tagged, ok := named.(reference.Tagged); ok {
		out["tag"] = tagged.Tag()
	}
	if digested, ok := named.(reference.Digested); ok {
		out["digest"] = digested.Digest().String()
	}
	return out
}

// lookup builds the keyring a pull secret with these auths keys gives the kubelet
// (pkg/credentialprovider/secrets: one Add per secret) and returns the usernames Lookup yields,
// in Lookup's order. Keys that normalize to the same index entry come out in Go map order.
func lookup(keys []string, name string) object {
	cfg := credentialprovider.DockerConfig{}
	for _, key := range keys {
		cfg[key] = credentialprovider.DockerConfigEntry{Username: key}
	}
	keyring := &credentialprovider.BasicDockerKeyring{}
	keyring.Add(nil, cfg)
	creds, found := keyring.Lookup(name)
	users := make([]string, 0, len(creds))
	for _, cred := range creds {
		users = append(users, cred.Username)
	}
	return object{"found": found, "users": users}
}

func answer(line []byte) object {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return object{"protocol_error": err.Error()}
	}
	switch req.Op {
	case "parse":
		return parse(req.Input)
	case "keyring":
		repoToPull, _, _, err := parsers.ParseImageName(req.Image)
		if err != nil {
			return object{"ok": false, "error": err.Error()}
		}
		out := lookup(req.Keys, repoToPull)
		out["ok"] = true
		out["name"] = repoToPull
		return out
	case "lookup":
		return lookup(req.Keys, req.Name)
	case "urls_match":
		match, err := credentialprovider.URLsMatchStr(req.Glob, req.Target)
		out := object{"match": match, "error": nil}
		if err != nil {
			out["error"] = err.Error()
		}
		return out
	}
	return object{"protocol_error": fmt.Sprintf("unknown op %q", req.Op)}
}

func main() {
	// Add logs ignored auths keys through klog; stdout is the protocol and stderr is for crashes.
	flags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(flags)
	_ = flags.Set("logtostderr", "false")
	_ = flags.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)

	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for {
		if in.Buffered() == 0 {
			if err := out.Flush(); err != nil {
				fmt.Fprintln(os.Stderr, "spacegate-oracle: writing stdout:", err)
				os.Exit(1)
			}
		}
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			if err := enc.Encode(answer(line)); err != nil {
				fmt.Fprintln(os.Stderr, "spacegate-oracle: encoding a response:", err)
				os.Exit(1)
			}
		}
		if err == io.EOF {
			if err := out.Flush(); err != nil {
				os.Exit(1)
			}
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "spacegate-oracle: reading stdin:", err)
			os.Exit(1)
		}
	}
}
