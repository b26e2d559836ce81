package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/zimage"
)

// hubHint says what to do next after a failure to get a model from the
// Hugging Face hub (or its cache): "" when err is not such a failure. model
// is the reference the user gave ("" for the default).
func hubHint(err error, model string) string {
	if model == "" {
		model = zimage.DefaultModel
	}
	endpoint := hub.FromEnv().Endpoint
	local := "or pass --model DIR with a local copy of the model (a diffusers directory)"
	var (
		nc *hub.NotCachedError
		he *hub.HTTPError
		ce *hub.ChecksumError
		de *net.DNSError
		ue *url.Error
	)
	switch {
	case errors.As(err, &nc) && errors.Is(err, hub.ErrOffline):
		return fmt.Sprintf("HF_HUB_OFFLINE is set: unset it to download %s (about 33 GB on first use), run `zimage pull %s` where there is network, %s", model, model, local)
	case errors.As(err, &nc):
		return fmt.Sprintf("run `zimage pull %s` to download it, %s", model, local)
	case errors.As(err, &he):
		switch {
		case he.Status == 401 || he.Status == 403:
			return fmt.Sprintf("set HF_TOKEN to a Hugging Face access token that may read %s (gated repositories need their terms accepted on the hub), %s", model, local)
		case he.Status == 404:
			return fmt.Sprintf("check the repository id and revision (--model Org/Name[@revision]) and HF_ENDPOINT (%s), %s", endpoint, local)
		case he.Status == 429 || he.Status >= 500:
			return fmt.Sprintf("the hub at %s is failing or rate-limiting: try again later (`zimage pull %s` resumes a partial download), set HF_ENDPOINT to a mirror, %s", endpoint, model, local)
		}
		return fmt.Sprintf("check HF_ENDPOINT (%s) and HF_TOKEN, %s", endpoint, local)
	case errors.As(err, &ce):
		return fmt.Sprintf("run the command again or `zimage pull %s` (the corrupt file was discarded), %s", model, local)
	case errors.As(err, &de), errors.As(err, &ue):
		return fmt.Sprintf("cannot reach the hub at %s: check the network (and HTTPS_PROXY), set HF_ENDPOINT to a reachable mirror, run `zimage pull %s` later (it resumes), set HF_HUB_OFFLINE=1 to use only the cache, %s", endpoint, model, local)
	}
	return ""
}
