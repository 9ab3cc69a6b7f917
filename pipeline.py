"""The threads of a streaming job: a :class:`Stage` runs a producer (a decoder, say) ahead of its consumer,
a :class:`Sink` runs a consumer (an encoder) behind its producer, each in a thread of its own joined by a
short queue, so that the stages of a job overlap and it runs at the pace of its slowest one. FFmpeg,
Pillow and torch let go of Python's lock while they work, so the threads really run at once.

Errors travel: what a stage's thread raises is raised where its items are taken, what a sink's thread
raises is raised where items are given to it; and either can be closed at any moment (an error elsewhere,
Ctrl-C), stopping its thread after the item at hand.
"""
import queue
import threading


class Stage:
    """Iterates ``items`` in a thread of its own, started at once, at most ``depth`` items ahead of whoever
    iterates the stage; what the thread raises is raised there. :meth:`close` (idempotent) stops the thread
    after the item at hand and closes ``items`` in it."""
    END = object()

    def __init__(self, items, depth):
        self.items = items
        self.queue, self.stopped = queue.Queue(depth), threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        try:
            for item in self.items:
                if not put(self.queue, (item, None), self.stopped):
                    return
            put(self.queue, (self.END, None), self.stopped)
        except BaseException as e:  # handed to the iterating thread, which raises it
            put(self.queue, (self.END, e), self.stopped)
        finally:
            getattr(self.items, "close", lambda: None)()

    def __iter__(self):
        while True:
            item, error = self.queue.get()
            if error is not None:
                raise error
            if item is self.END:
                return
            yield item

    def close(self):
        self.stopped.set()
        self.thread.join()


class Sink:
    """Runs ``consume(items)`` in a thread of its own over the items given to :meth:`put`, at most ``depth``
    behind; :meth:`finish` ends the items and waits for it; what it raises is raised in :meth:`put` or
    :meth:`finish`. :meth:`close` (idempotent) stops it at the item at hand without finishing."""
    END = object()

    class Stopped(Exception):
        pass

    def __init__(self, consume, depth):
        self.queue, self.stopped, self.error = queue.Queue(depth), threading.Event(), None
        self.thread = threading.Thread(target=self._work, args=(consume,), daemon=True)
        self.thread.start()

    def _items(self):
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                item = None
            if self.stopped.is_set():
                raise self.Stopped
            if item is self.END:
                return
            if item is not None:
                yield item

    def _work(self, consume):
        try:
            consume(self._items())
        except self.Stopped:
            pass
        except BaseException as e:  # raised in the thread that puts
            self.error = e

    def put(self, item):
        if not put(self.queue, item, self.stopped, self.thread) or self.error is not None:
            raise self.error or RuntimeError("the consuming thread stopped")

    def finish(self):
        self.put(self.END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def close(self):
        self.stopped.set()
        self.thread.join()


def put(q, item, stopped, consumer=None):
    """Put ``item`` into the bounded queue ``q`` unless ``stopped`` is set (or the ``consumer`` thread has
    ended) first; whether it was put."""
    while not stopped.is_set() and (consumer is None or consumer.is_alive()):
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False
