// The server library (broker/nebula_broker.h) as an application embeds it:
// on the application's own event base, with the seed's authenticate
// callback, getClientsCount, getStorage and stop.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include <event2/event.h>
#include <event2/thread.h>

#include "nebula_broker.h"
#include "sync_test_client.h"

using namespace nebula_test;

namespace {

struct AuthLog {
    std::atomic<int> calls{0};
};

// Accepts one token, in tenant "acme", reading everything and writing "todos".
bool Authenticate(void *user_data, const char *token, const char *client_id, nebula_grant *grant) {
    static_cast<AuthLog *>(user_data)->calls++;
    if (strcmp(token, "library-token-0123456789") != 0 || strcmp(client_id, "embedded") != 0)
        return false;
    memset(grant, 0, sizeof *grant);
    snprintf(grant->tenant, sizeof grant->tenant, "acme");
    snprintf(grant->read_patterns, sizeof grant->read_patterns, "*");
    snprintf(grant->write_patterns, sizeof grant->write_patterns, "todos");
    return true;
}

class BrokerLibraryTest : public ::testing::Test {
protected:
    void SetUp() override {
        // This test drives the broker from a second thread (event_base_once
        // in Stop), so the caller's base needs libevent's locking.
        ASSERT_EQ(evthread_use_pthreads(), 0);
        base_ = event_base_new();
        ASSERT_NE(base_, nullptr);
        nebula_broker_options opts;
        nebula_broker_options_init(&opts);
        opts.event_base = base_;
        opts.listen = "127.0.0.1:0";
        opts.admin_listen = nullptr;
        opts.workers = 2;
        opts.authenticate = Authenticate;
        opts.authenticate_data = &auth_;
        opts.logging_enabled = false;
        char err[256] = "";
        ASSERT_EQ(nebula_broker_create(&opts, &broker_, err, sizeof err), NEBULA_OK) << err;
        ASSERT_EQ(nebula_broker_start(broker_, err, sizeof err), NEBULA_OK) << err;
        loop_ = std::thread([this] { event_base_dispatch(base_); });
    }

    void TearDown() override {
        if (loop_.joinable()) {
            Stop();
            loop_.join();
        }
        nebula_broker_free(broker_);
        // The base is the application's: still usable after the broker is gone.
        EXPECT_EQ(event_base_loop(base_, EVLOOP_NONBLOCK), 1) << "nothing left on the caller's base";
        event_base_free(base_);
    }

    // nebula_broker_stop must run on the acceptor thread: post it there.
    void Stop() {
        event_base_once(base_, -1, EV_TIMEOUT,
                        [](evutil_socket_t, short, void *b) { nebula_broker_stop(static_cast<nebula_broker *>(b)); },
                        broker_, nullptr);
    }

    ConnectOptions Client() const {
        ConnectOptions c;
        c.port = nebula_broker_listen_port(broker_);
        return c;
    }

    bool WaitForClients(size_t n) {
        for (int i = 0; i < 500; i++) {
            if (nebula_broker_clients_count(broker_) == n) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    struct event_base *base_ = nullptr;
    nebula_broker *broker_ = nullptr;
    std::thread loop_;
    AuthLog auth_;
};

TEST_F(BrokerLibraryTest, RunsOnTheCallersEventBaseWithTheAuthenticateCallback) {
    EXPECT_EQ(nebula_broker_event_base(broker_), base_);
    EXPECT_NE(nebula_broker_listen_port(broker_), 0);
    EXPECT_EQ(nebula_broker_admin_port(broker_), 0) << "no admin endpoint was asked for";

    SyncClient c;
    SyncOpenOptions o;
    o.client_id = "embedded";
    o.auth_token = "library-token-0123456789";
    SyncMessage welcome;
    ASSERT_TRUE(c.Open(Client(), o, &welcome)) << c.last_error();
    EXPECT_EQ(welcome.tenant, "acme");
    EXPECT_EQ(auth_.calls.load(), 1);
    EXPECT_TRUE(WaitForClients(1));

    // The grant from the callback is enforced: todos writable, notes not.
    PushResultV r;
    ASSERT_TRUE(c.Push({MakeEvent("todos", "t1", "{\"a\":1}"), MakeEvent("notes", "n1", "{\"a\":1}")}, &r))
        << c.last_error();
    ASSERT_EQ(r.results.size(), 2u);
    EXPECT_EQ(r.results[0].status, kAccepted) << r.results[0].Describe();
    EXPECT_EQ(r.results[1].status, kRejected) << r.results[1].Describe();

    c.Close();
    EXPECT_TRUE(WaitForClients(0));
}

TEST_F(BrokerLibraryTest, CallbackRejectionIsUnauthenticated) {
    SyncClient c;
    ASSERT_TRUE(c.Connect(Client())) << c.last_error();
    ASSERT_TRUE(c.SendHello("embedded", "not-the-right-token-000"));
    SyncMessage m;
    ASSERT_TRUE(c.Next(&m)) << c.last_error();
    EXPECT_TRUE(m.is(SyncMessage::kError)) << m.Describe();
    EXPECT_EQ(m.error_code, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED);
}

TEST_F(BrokerLibraryTest, GetStorageGivesTheStorageThatHoldsPushedEvents) {
    SyncClient c;
    SyncOpenOptions o;
    o.client_id = "embedded";
    o.auth_token = "library-token-0123456789";
    ASSERT_TRUE(c.Open(Client(), o)) << c.last_error();
    PushResultV r;
    ASSERT_TRUE(c.Push({MakeEvent("todos", "t1", "{\"a\":1}")}, &r)) << c.last_error();
    ASSERT_EQ(r.results.at(0).status, kAccepted);

    sync_storage *storage = nebula_broker_storage(broker_);
    ASSERT_NE(storage, nullptr);
    struct Head {
        bool done = false;
        uint64_t last_seq = 0;
    } head;
    storage->ops->head(storage->ctx, "acme", "todos",
                       [](void *ud, int status, const sync_head *h) {
                           auto *out = static_cast<Head *>(ud);
                           out->done = status == SYNC_STORAGE_OK;
                           out->last_seq = h->last_seq;
                       },
                       &head);
    ASSERT_TRUE(head.done) << "the memory storage answers inline";
    EXPECT_EQ(head.last_seq, 1u);
}

TEST_F(BrokerLibraryTest, StopDrainsSessionsAndReturnsTheLoop) {
    SyncClient c;
    SyncOpenOptions o;
    o.client_id = "embedded";
    o.auth_token = "library-token-0123456789";
    ASSERT_TRUE(c.Open(Client(), o)) << c.last_error();
    Stop();
    Frame f;
    ASSERT_EQ(c.ws().ReadFrame(&f), ReadResult::kOk) << c.ws().last_error();
    ASSERT_TRUE(f.is_close()) << f.Describe();
    EXPECT_EQ(f.close_code(), 1001);
    c.Close();
    loop_.join();   // event_base_dispatch returned: every worker finished
}

}  // namespace
