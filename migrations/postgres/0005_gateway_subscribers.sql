-- The users who keep the gateway's own JID in their roster (RFC 6121
-- subscriptions), whether or not they ever registered: the gateway tells
-- them when it comes and goes, and answers their servers' probes, as
-- biboumi does with its `roster` table.
CREATE TABLE gateway_subscribers (
    gateway     TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (gateway, account)
);
