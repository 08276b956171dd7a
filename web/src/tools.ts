// The lazy chunk's entry (see lazyTools.ts): the thread's members & settings panel, its
// documents and the document viewer, the search page and the import / export page.
export { ThreadTools } from './panels/threadTools';
export { SearchPage } from './panels/search';
export { DataPage } from './panels/data';
export { DocumentsPanel } from './panels/documents';
export { DocViewer } from './panels/docViewer';
