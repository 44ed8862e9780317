// Peer hub for the neonex benchmarks: gorilla/websocket in the classic hub pattern of its
// chat example. One hub goroutine owns the rooms and serialises register, join/leave,
// unregister and broadcast through channels; each client has a read pump and a write pump
// goroutine and a bounded send channel. A client whose channel is full is dropped as a slow
// consumer, as in the example. Broadcasts are framed once (websocket.PreparedMessage) and
// the write pump writes everything queued at each wake-up before it waits again; each
// message is its own WebSocket message (gorilla writes each frame with its own write call).
//
// Protocol (the loadgen's `--protocol gorilla`, shared with the uws and ws peers), text frames:
//
//	client -> server  {"join":"ROOM"}             join; answered with {"joined":"ROOM"}
//	                  {"leave":"ROOM"}            leave; answered with {"left":"ROOM"}
//	                  {"pub":"ROOM","msg":"TEXT"} TEXT goes to every member of ROOM, sender included
//	server -> client  the raw TEXT of each published message, one WebSocket message each;
//	                  {"error":"..."} for a request it does not understand
//
// Usage: hub PORT   (listens on 127.0.0.1:PORT, runs in the foreground)
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The chat example's constants (also neonex's defaults).
const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = (pongWait * 9) / 10
	maxMessageSize = 512 * 1024
	sendBuffer     = 256
)

var roomRe = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,128}$`)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	// Idle connections hold no write buffer (gorilla's advice for many connections).
	WriteBufferPool:   &sync.Pool{},
	EnableCompression: false,
}

// Client is one WebSocket connection.
type Client struct {
	hub  *Hub
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
	// rooms is owned by the hub goroutine.
	rooms map[string]struct{}
}

type request struct {
	Join  *string `json:"join"`
	Leave *string `json:"leave"`
	Pub   *string `json:"pub"`
	Msg   string  `json:"msg"`
}

// What a client asks of the hub besides publishing.
type op int

const (
	opJoin op = iota
	opLeave
	opBadRequest
)

type membership struct {
	client *Client
	room   string
	op     op
}

type broadcast struct {
	room string
	msg  *websocket.PreparedMessage
}

// Hub owns the clients and the rooms.
type Hub struct {
	clients    map[*Client]struct{}
	rooms      map[string]map[*Client]struct{}
	register   chan *Client
	unregister chan *Client
	membership chan membership
	broadcast  chan broadcast
}

func newHub() *Hub {
	return &Hub{
		clients:    make(map[*Client]struct{}),
		rooms:      make(map[string]map[*Client]struct{}),
		register:   make(chan *Client),
		unregister: make(chan *Client),
		membership: make(chan membership, 256),
		broadcast:  make(chan broadcast, 256),
	}
}

func prepared(text []byte) *websocket.PreparedMessage {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, text)
	if err != nil {
		log.Fatalf("prepare message: %v", err)
	}
	return pm
}

func (h *Hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = struct{}{}
		case c := <-h.unregister:
			if _, ok := h.clients[c]; ok {
				h.drop(c)
			}
		case m := <-h.membership:
			if _, ok := h.clients[m.client]; !ok {
				continue
			}
			var reply []byte
			switch m.op {
			case opJoin:
				room := h.rooms[m.room]
				if room == nil {
					room = make(map[*Client]struct{})
					h.rooms[m.room] = room
				}
				room[m.client] = struct{}{}
				m.client.rooms[m.room] = struct{}{}
				reply, _ = json.Marshal(map[string]string{"joined": m.room})
			case opLeave:
				h.leave(m.client, m.room)
				reply, _ = json.Marshal(map[string]string{"left": m.room})
			default:
				reply = []byte(`{"error":"bad_request"}`)
			}
			h.deliver(m.client, prepared(reply))
		case b := <-h.broadcast:
			for c := range h.rooms[b.room] {
				h.deliver(c, b.msg)
			}
		}
	}
}

// deliver queues m for c; a client whose queue is full is dropped (slow consumer).
func (h *Hub) deliver(c *Client, m *websocket.PreparedMessage) {
	select {
	case c.send <- m:
	default:
		h.drop(c)
	}
}

func (h *Hub) leave(c *Client, name string) {
	if room := h.rooms[name]; room != nil {
		delete(room, c)
		if len(room) == 0 {
			delete(h.rooms, name)
		}
	}
	delete(c.rooms, name)
}

func (h *Hub) drop(c *Client) {
	for name := range c.rooms {
		h.leave(c, name)
	}
	delete(h.clients, c)
	close(c.send)
}

// readPump reads requests and hands them to the hub.
func (c *Client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error {
		c.conn.SetReadDeadline(time.Now().Add(pongWait))
		return nil
	})
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(pongWait))
		var req request
		if err := json.Unmarshal(data, &req); err != nil {
			c.hub.membership <- membership{client: c, op: opBadRequest}
			continue
		}
		switch {
		case req.Pub != nil:
			c.hub.broadcast <- broadcast{room: *req.Pub, msg: prepared([]byte(req.Msg))}
		case req.Join != nil && roomRe.MatchString(*req.Join):
			c.hub.membership <- membership{client: c, room: *req.Join, op: opJoin}
		case req.Leave != nil:
			c.hub.membership <- membership{client: c, room: *req.Leave, op: opLeave}
		default:
			c.hub.membership <- membership{client: c, op: opBadRequest}
		}
	}
}

// writePump writes queued messages and pings. After each wake-up it also writes whatever
// else is queued by then, then waits again.
func (c *Client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case m, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				// The hub closed the channel.
				c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1008, "slow consumer"))
				return
			}
			if err := c.conn.WritePreparedMessage(m); err != nil {
				return
			}
			for n := len(c.send); n > 0; n-- {
				m, ok := <-c.send
				if !ok {
					c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1008, "slow consumer"))
					return
				}
				if err := c.conn.WritePreparedMessage(m); err != nil {
					return
				}
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func serveWs(hub *Hub, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &Client{
		hub:   hub,
		conn:  conn,
		send:  make(chan *websocket.PreparedMessage, sendBuffer),
		rooms: make(map[string]struct{}),
	}
	hub.register <- c
	go c.writePump()
	go c.readPump()
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: hub PORT")
	}
	addr := "127.0.0.1:" + os.Args[1]
	hub := newHub()
	go hub.run()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		serveWs(hub, w, r)
	})
	log.Printf("gorilla: listening on %s (pid %d)", addr, os.Getpid())
	log.Fatal(http.ListenAndServe(addr, nil))
}
