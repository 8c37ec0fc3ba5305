"""The statement counter (helpers.counter): shapes, labels, and an N+1 counted through SQLAlchemy events."""
from __future__ import annotations

import pytest
from sqlalchemy import ForeignKey, create_engine, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

from helpers.counter import count_statements, normalize_sql, shape_label


class Base(DeclarativeBase):
    pass


class Artist(Base):
    __tablename__ = "artist"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    albums: Mapped[list["Album"]] = relationship(back_populates="artist")


class Album(Base):
    __tablename__ = "album"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    artist_id: Mapped[int] = mapped_column(ForeignKey("artist.id"))
    artist: Mapped[Artist] = relationship(back_populates="albums")


@pytest.mark.parametrize("sql, shape", [
    ("SELECT * FROM album WHERE artist_id = %(pk_1)s::INTEGER", "SELECT * FROM album WHERE artist_id = ?"),
    ("SELECT * FROM album WHERE artist_id = 7", "SELECT * FROM album WHERE artist_id = ?"),
    ("SELECT * FROM album WHERE %(param_1)s = album.artist_id", "SELECT * FROM album WHERE album.artist_id = ?"),
    ("select * from t where name = 'O''Brien' and x in (1, 2, 3)", "select * from t where name = ? and x in (?, ...)"),
    ("INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s), (%s, %s)", "INSERT INTO t (a, b) VALUES (?, ...), ..."),
    ("SELECT  a\n  FROM t1 WHERE id = $1", "SELECT a FROM t1 WHERE id = ?"),
    ("SELECT t2.x FROM t2", "SELECT t2.x FROM t2"),
])
def test_normalize(sql, shape):
    assert normalize_sql(sql) == shape


def test_labels():
    assert shape_label("SELECT album.id, album.title FROM album WHERE album.artist_id = ?") == \
        "SELECT album WHERE artist_id = ?"
    assert shape_label("SELECT artist.id, artist.name FROM artist") == "SELECT artist ..."
    assert shape_label("UPDATE track SET name = ? WHERE track.id = ?") == "UPDATE track WHERE id = ?"
    assert shape_label("INSERT INTO album (title) VALUES (?)") == "INSERT album"
    assert shape_label("DELETE FROM album WHERE album.id = ? RETURNING album.id") == "DELETE album WHERE id = ?"
    assert shape_label("VACUUM") == "VACUUM"


@pytest.fixture
def engine(module_db):
    from helpers import db

    eng = create_engine(db.target().sqlalchemy_url(module_db.info.dbname))
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    with Session(eng) as s:
        s.add_all([Artist(id=i, name=f"Artist {i}", albums=[Album(title=f"{i}-{j}") for j in range(i % 3)])
                   for i in range(1, 8)])
        s.commit()
    yield eng
    eng.dispose()


def test_n_plus_one_is_counted_and_grouped(engine):
    with count_statements(engine) as stats:
        with Session(engine) as s:
            total = sum(len(a.albums) for a in s.scalars(select(Artist).order_by(Artist.id)))
    assert total == 7
    assert stats.count == 8 and stats.round_trips == 8
    assert stats.report() == "8 statements in 8 round trips: 1 x SELECT artist ... + 7 x SELECT album WHERE artist_id = ?"
    assert [n for _, n in stats.by_shape()] == [1, 7]
    assert "7 x SELECT album.id, album.title, album.artist_id FROM album WHERE album.artist_id = ?" in \
        stats.report(details=True)


def test_eager_loading_needs_two_statements_and_listeners_are_removed(engine):
    with count_statements(engine) as stats:
        with Session(engine) as s:
            for a in s.scalars(select(Artist).options(selectinload(Artist.albums))):
                len(a.albums)
    assert stats.count == 2
    assert stats.report().startswith("2 statements in 2 round trips: 1 x SELECT artist ... + 1 x SELECT album WHERE")
    with engine.connect() as c:  # after the block nothing is recorded
        c.execute(text("SELECT 1"))
    assert stats.count == 2


def test_executemany_counts_statements_not_round_trips(engine):
    with count_statements(engine) as stats:
        with engine.begin() as c:
            c.execute(insert(Album), [{"title": f"x{i}", "artist_id": 1} for i in range(5)])
    assert stats.count == 5 and stats.round_trips == 1 and stats.commits == 1
    assert stats.report() == "5 statements in 1 round trip: 5 x INSERT album"


def test_empty_block_and_lesson_like_object(engine):
    class LessonLike:
        pass

    les = LessonLike()
    les.engine = engine
    with count_statements(les) as stats:
        pass
    assert stats.count == 0 and stats.report() == "0 statements"
