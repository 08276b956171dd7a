// Where files for a thread's documents come from (issue #19, docs/documents.md): the composer's
// Attach button, files pasted into the composer (composer.tsx), and files dropped anywhere on the
// open thread (`useFileDrop`, thread.tsx). Each goes to docStore.ts's `upload`; the list that
// shows them is panels/documents.tsx.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import type { Chat } from './chat';
import { t } from './i18n';
import type { Thread } from './types';
import './documents.css';

/** The types the server reads, for the file picker (the server decides: see docs/documents.md). */
export const ACCEPTED = '.pdf,.docx,.md,.markdown,.txt,.text,.html,.htm,.csv';

/** Sends every file of a pick, a paste or a drop to the thread. */
export function uploadAll(chat: Chat, thread: string, files: FileList | File[] | null | undefined): void {
  for (const file of Array.from(files ?? [])) void chat.documents.upload(thread, file);
}

/** The composer's "Attach" button and its hidden file input. */
export function AttachButton({ chat, thread }: { chat: Chat; thread: Thread }) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <>
      <input
        ref={input}
        type="file"
        multiple
        hidden
        accept={ACCEPTED}
        data-testid="attach-input"
        aria-label={t('docs.attachLabel')}
        onChange={(e) => {
          uploadAll(chat, thread.id, e.currentTarget.files);
          e.currentTarget.value = '';
        }}
      />
      <button type="button" data-testid="attach" title={t('docs.attachTitle')} onClick={() => input.current?.click()}>
        {t('docs.attach')}
      </button>
    </>
  );
}

type DragHandlers = Pick<JSX.HTMLAttributes<HTMLElement>, 'onDragEnter' | 'onDragOver' | 'onDragLeave' | 'onDrop'>;

const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes('Files');

/** The files of a paste that are meant as files: not the picture an office suite adds to copied
 *  text (text comes with it), only what was copied as files. */
export function pastedFiles(data: DataTransfer | null): File[] {
  const files = Array.from(data?.files ?? []);
  const withText = Array.from(data?.types ?? []).includes('text/plain');
  return withText && files.every((f) => f.type.startsWith('image/')) ? [] : files;
}

/** Files dropped anywhere on the thread are uploaded to it; `dragging` while files hover over it. */
export function useFileDrop(chat: Chat, thread: string): { dragging: boolean; handlers: DragHandlers } {
  const [dragging, setDragging] = useState(false);
  // dragenter / dragleave fire for every child crossed: count them.
  const depth = useRef(0);
  // A file dropped next to the thread (the sidebar, the top bar) would make the browser leave the
  // page to show it: refuse such drops while a thread is open.
  useEffect(() => {
    const refuse = (e: DragEvent) => {
      if (hasFiles(e)) e.preventDefault();
    };
    window.addEventListener('dragover', refuse);
    window.addEventListener('drop', refuse);
    return () => {
      window.removeEventListener('dragover', refuse);
      window.removeEventListener('drop', refuse);
    };
  }, []);
  return {
    dragging,
    handlers: {
      onDragEnter: (e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        depth.current += 1;
        setDragging(true);
      },
      onDragOver: (e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      },
      onDragLeave: (e) => {
        if (!hasFiles(e)) return;
        depth.current = Math.max(0, depth.current - 1);
        if (depth.current === 0) setDragging(false);
      },
      onDrop: (e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        depth.current = 0;
        setDragging(false);
        uploadAll(chat, thread, e.dataTransfer?.files);
      },
    },
  };
}
