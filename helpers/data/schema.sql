-- The music store's schema (00_start_here). Read by helpers/datasets.py in two parts:
-- the tables first (no keys, so COPY runs at full speed), then, after the data is in, the keys,
-- identities, checks and indexes (building an index once over loaded rows is much cheaper than
-- maintaining it row by row). Statements end with ";" at the end of a line.
--
-- Chinook's tables keep Chinook's PostgreSQL names and its indexes on foreign keys.
-- The generated tables (plays, reviews, comments) get keys and checks only: lessons add their own indexes.

CREATE TABLE artist (
    artist_id      integer NOT NULL,
    name           text
);
CREATE TABLE album (
    album_id       integer NOT NULL,
    title          text NOT NULL,
    artist_id      integer NOT NULL
);
CREATE TABLE genre (
    genre_id       integer NOT NULL,
    name           text
);
CREATE TABLE media_type (
    media_type_id  integer NOT NULL,
    name           text
);
CREATE TABLE playlist (
    playlist_id    integer NOT NULL,
    name           text
);
CREATE TABLE track (
    track_id       integer NOT NULL,
    name           text NOT NULL,
    album_id       integer,
    media_type_id  integer NOT NULL,
    genre_id       integer,
    composer       text,
    milliseconds   integer NOT NULL,
    bytes          integer,
    unit_price     numeric(10, 2) NOT NULL
);
CREATE TABLE playlist_track (
    playlist_id    integer NOT NULL,
    track_id       integer NOT NULL
);
CREATE TABLE employee (
    employee_id    integer NOT NULL,
    last_name      text NOT NULL,
    first_name     text NOT NULL,
    title          text,
    reports_to     integer,
    birth_date     timestamp,
    hire_date      timestamp,
    address        text,
    city           text,
    state          text,
    country        text,
    postal_code    text,
    phone          text,
    fax            text,
    email          text
);
CREATE TABLE customer (
    customer_id    integer NOT NULL,
    first_name     text NOT NULL,
    last_name      text NOT NULL,
    company        text,
    address        text,
    city           text,
    state          text,
    country        text,
    postal_code    text,
    phone          text,
    fax            text,
    email          text NOT NULL,
    support_rep_id integer
);
CREATE TABLE invoice (
    invoice_id          integer NOT NULL,
    customer_id         integer NOT NULL,
    invoice_date        timestamp NOT NULL,
    billing_address     text,
    billing_city        text,
    billing_state       text,
    billing_country     text,
    billing_postal_code text,
    total               numeric(10, 2) NOT NULL
);
CREATE TABLE invoice_line (
    invoice_line_id integer NOT NULL,
    invoice_id      integer NOT NULL,
    track_id        integer NOT NULL,
    unit_price      numeric(10, 2) NOT NULL,
    quantity        integer NOT NULL
);
CREATE TABLE plays (
    play_id        bigint NOT NULL,
    customer_id    integer NOT NULL,
    track_id       integer NOT NULL,
    played_at      timestamptz NOT NULL,
    ms_played      integer NOT NULL,
    device         text NOT NULL,
    source         text NOT NULL
);
CREATE TABLE reviews (
    review_id      integer NOT NULL,
    customer_id    integer NOT NULL,
    track_id       integer NOT NULL,
    rating         smallint NOT NULL,
    body           text NOT NULL,
    attrs          jsonb NOT NULL,
    status         text NOT NULL,
    created_at     timestamptz NOT NULL,
    deleted_at     timestamptz
);
CREATE TABLE comments (
    comment_id       integer NOT NULL,
    customer_id      integer NOT NULL,
    commentable_type text NOT NULL,
    commentable_id   integer NOT NULL,
    body             text NOT NULL,
    created_at       timestamptz NOT NULL
);

-- @after-load

ALTER TABLE artist ADD PRIMARY KEY (artist_id);
ALTER TABLE album ADD PRIMARY KEY (album_id);
ALTER TABLE genre ADD PRIMARY KEY (genre_id);
ALTER TABLE media_type ADD PRIMARY KEY (media_type_id);
ALTER TABLE playlist ADD PRIMARY KEY (playlist_id);
ALTER TABLE track ADD PRIMARY KEY (track_id);
ALTER TABLE playlist_track ADD PRIMARY KEY (playlist_id, track_id);
ALTER TABLE employee ADD PRIMARY KEY (employee_id);
ALTER TABLE customer ADD PRIMARY KEY (customer_id);
ALTER TABLE invoice ADD PRIMARY KEY (invoice_id);
ALTER TABLE invoice_line ADD PRIMARY KEY (invoice_line_id);
ALTER TABLE plays ADD PRIMARY KEY (play_id);
ALTER TABLE reviews ADD PRIMARY KEY (review_id);
ALTER TABLE comments ADD PRIMARY KEY (comment_id);

ALTER TABLE customer ADD CONSTRAINT customer_email_key UNIQUE (email);

ALTER TABLE album ADD FOREIGN KEY (artist_id) REFERENCES artist (artist_id);
ALTER TABLE track ADD FOREIGN KEY (album_id) REFERENCES album (album_id);
ALTER TABLE track ADD FOREIGN KEY (media_type_id) REFERENCES media_type (media_type_id);
ALTER TABLE track ADD FOREIGN KEY (genre_id) REFERENCES genre (genre_id);
ALTER TABLE playlist_track ADD FOREIGN KEY (playlist_id) REFERENCES playlist (playlist_id);
ALTER TABLE playlist_track ADD FOREIGN KEY (track_id) REFERENCES track (track_id);
ALTER TABLE employee ADD FOREIGN KEY (reports_to) REFERENCES employee (employee_id);
ALTER TABLE customer ADD FOREIGN KEY (support_rep_id) REFERENCES employee (employee_id);
ALTER TABLE invoice ADD FOREIGN KEY (customer_id) REFERENCES customer (customer_id);
ALTER TABLE invoice_line ADD FOREIGN KEY (invoice_id) REFERENCES invoice (invoice_id);
ALTER TABLE invoice_line ADD FOREIGN KEY (track_id) REFERENCES track (track_id);
ALTER TABLE plays ADD FOREIGN KEY (customer_id) REFERENCES customer (customer_id);
ALTER TABLE plays ADD FOREIGN KEY (track_id) REFERENCES track (track_id);
ALTER TABLE reviews ADD FOREIGN KEY (customer_id) REFERENCES customer (customer_id);
ALTER TABLE reviews ADD FOREIGN KEY (track_id) REFERENCES track (track_id);
ALTER TABLE comments ADD FOREIGN KEY (customer_id) REFERENCES customer (customer_id);

ALTER TABLE reviews ADD CONSTRAINT reviews_rating_check CHECK (rating BETWEEN 1 AND 5);
ALTER TABLE reviews ADD CONSTRAINT reviews_status_check CHECK (status IN ('published', 'pending', 'flagged'));
ALTER TABLE comments ADD CONSTRAINT comments_commentable_type_check
    CHECK (commentable_type IN ('track', 'album', 'playlist'));

-- Chinook's own indexes on its foreign keys.
CREATE INDEX album_artist_id_idx ON album (artist_id);
CREATE INDEX track_album_id_idx ON track (album_id);
CREATE INDEX track_genre_id_idx ON track (genre_id);
CREATE INDEX track_media_type_id_idx ON track (media_type_id);
CREATE INDEX playlist_track_track_id_idx ON playlist_track (track_id);
CREATE INDEX employee_reports_to_idx ON employee (reports_to);
CREATE INDEX customer_support_rep_id_idx ON customer (support_rep_id);
CREATE INDEX invoice_customer_id_idx ON invoice (customer_id);
CREATE INDEX invoice_line_invoice_id_idx ON invoice_line (invoice_id);
CREATE INDEX invoice_line_track_id_idx ON invoice_line (track_id);

-- New rows get ids from identities that continue after the loaded ones.
ALTER TABLE artist ALTER COLUMN artist_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE album ALTER COLUMN album_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE genre ALTER COLUMN genre_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE media_type ALTER COLUMN media_type_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE playlist ALTER COLUMN playlist_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE track ALTER COLUMN track_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE employee ALTER COLUMN employee_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE customer ALTER COLUMN customer_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE invoice ALTER COLUMN invoice_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE invoice_line ALTER COLUMN invoice_line_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE plays ALTER COLUMN play_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE reviews ALTER COLUMN review_id ADD GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE comments ALTER COLUMN comment_id ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT setval(pg_get_serial_sequence('artist', 'artist_id'), (SELECT max(artist_id) FROM artist));
SELECT setval(pg_get_serial_sequence('album', 'album_id'), (SELECT max(album_id) FROM album));
SELECT setval(pg_get_serial_sequence('genre', 'genre_id'), (SELECT max(genre_id) FROM genre));
SELECT setval(pg_get_serial_sequence('media_type', 'media_type_id'), (SELECT max(media_type_id) FROM media_type));
SELECT setval(pg_get_serial_sequence('playlist', 'playlist_id'), (SELECT max(playlist_id) FROM playlist));
SELECT setval(pg_get_serial_sequence('track', 'track_id'), (SELECT max(track_id) FROM track));
SELECT setval(pg_get_serial_sequence('employee', 'employee_id'), (SELECT max(employee_id) FROM employee));
SELECT setval(pg_get_serial_sequence('customer', 'customer_id'), (SELECT max(customer_id) FROM customer));
SELECT setval(pg_get_serial_sequence('invoice', 'invoice_id'), (SELECT max(invoice_id) FROM invoice));
SELECT setval(pg_get_serial_sequence('invoice_line', 'invoice_line_id'), (SELECT max(invoice_line_id) FROM invoice_line));
SELECT setval(pg_get_serial_sequence('plays', 'play_id'), (SELECT max(play_id) FROM plays));
SELECT setval(pg_get_serial_sequence('reviews', 'review_id'), (SELECT max(review_id) FROM reviews));
SELECT setval(pg_get_serial_sequence('comments', 'comment_id'), (SELECT max(comment_id) FROM comments));
