package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
)

// The control interface: JSON over HTTP on a unix socket (root only), driven by the tests
// (tests/support/chaos.py). Faults take effect on the next matching operation; lifting one
// releases every operation it holds. Nothing needs a restart.
//
//	GET    /healthz                      {"registered": bool}
//	GET    /faults                       active faults, with their hit counts
//	POST   /faults                       add a fault (see Fault); answers it with its id
//	DELETE /faults/{id}                  lift one fault
//	DELETE /faults                       lift every fault
//	GET    /volumes                      volumes, snapshots and what is staged on this node
//	POST   /volumes/{id}/replace         swap the backing store for an empty one
//	POST   /volumes/{id}/corrupt         {"offset": n, "length": n}: invert those bytes of it
//	                                     (409 while the volume is staged: try again)
func controlHandler(d *Driver) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]any{"registered": d.registered.Load(), "version": version})
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, d.faults.List())
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		fault := new(Fault)
		decoder := json.NewDecoder(r.Body)
		decoder.DisallowUnknownFields()
		if err := decoder.Decode(fault); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := d.faults.Add(fault); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		reply(w, http.StatusCreated, fault)
	})
	mux.HandleFunc("DELETE /faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		if d.faults.Lift(r.PathValue("id")) == 0 {
			reply(w, http.StatusNotFound, map[string]string{"error": "no such fault"})
			return
		}
		reply(w, http.StatusOK, map[string]int{"lifted": 1})
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]int{"lifted": d.faults.Lift("")})
	})
	mux.HandleFunc("GET /volumes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]any{
			"volumes":   d.store.Volumes(),
			"snapshots": d.store.Snapshots(),
			"staged":    d.Staged(),
		})
	})
	mux.HandleFunc("POST /volumes/{id}/replace", func(w http.ResponseWriter, r *http.Request) {
		respond(w, d.ReplaceBacking(r.PathValue("id")))
	})
	mux.HandleFunc("POST /volumes/{id}/corrupt", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Offset, Length int64 }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		respond(w, d.Corrupt(r.PathValue("id"), body.Offset, body.Length))
	})
	return mux
}

func respond(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		reply(w, http.StatusOK, map[string]bool{"ok": true})
	case errors.Is(err, os.ErrNotExist):
		reply(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case errors.Is(err, errInUse):
		reply(w, http.StatusConflict, map[string]string{"error": err.Error()})
	default:
		reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	}
}

func reply(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func serveControl(d *Driver, socket string) (*http.Server, error) {
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		listener.Close()
		return nil, err
	}
	server := &http.Server{Handler: controlHandler(d)}
	go func() { _ = server.Serve(listener) }()
	return server, nil
}
